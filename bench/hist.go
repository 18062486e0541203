package main

import (
	"math/bits"
	"time"
)

// histogram records durations in nanoseconds with a bounded relative error,
// in the manner of HdrHistogram: values are grouped by their power of two
// (the exponent) and each power of two is split into 2^histSubBits linear
// sub-buckets, so a bucket is never wider than 1/2^histSubBits of the values
// it holds (under 1% with 7 bits).
//
// Invariants: counts has histBuckets entries fixed at creation; record never
// allocates; total is the sum of counts; max is the largest value recorded.
//
// Design: a flat array indexed by (exponent, mantissa) computed with one
// bits.Len64, so recording is a few instructions and merging is an add per
// bucket. Rejected: keeping every sample and sorting at the end, which
// allocates per sample and grows with the run's length.
type histogram struct {
	counts [histBuckets]uint64
	total  uint64
	max    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	// 64-histSubBits exponents of histSub buckets each cover every int64.
	histBuckets = (64 - histSubBits + 1) * histSub
)

// bucketOf maps a non-negative value to its bucket index. Values below
// histSub have a bucket of their own; above, the top histSubBits bits after
// the leading one select the sub-bucket.
func bucketOf(v int64) int {
	if v < histSub {
		return int(v)
	}
	u := uint64(v)
	shift := bits.Len64(u) - histSubBits - 1
	return (shift+1)*histSub + int(u>>uint(shift)) - histSub
}

// bucketLow is the smallest value of bucket i, inverse of bucketOf.
func bucketLow(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := i/histSub - 1
	mant := i%histSub + histSub
	return int64(mant) << uint(shift)
}

func (h *histogram) record(v int64) {
	if v < 0 {
		v = 0 // a clock step backwards; count it as instantaneous
	}
	h.counts[bucketOf(v)]++
	h.total++
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the value below which the fraction q of samples lie,
// reported as the upper edge of its bucket (never below the true value),
// and never above the maximum recorded.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i+1 >= histBuckets {
				return time.Duration(h.max)
			}
			return time.Duration(min(bucketLow(i+1)-1, h.max))
		}
	}
	return time.Duration(h.max)
}
