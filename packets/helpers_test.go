package packets

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goldenDir holds the hand-written vectors shared with other packages.
const goldenDir = "../testdata/packets"

// loadHex reads a golden .hex file: hex byte pairs, '#' comments.
func loadHex(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var digits strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// splitPacket frames one whole packet with a Reader, as the engine would.
func splitPacket(t testing.TB, version byte, wire []byte) (FixedHeader, []byte) {
	t.Helper()
	r := NewReader(bytes.NewReader(wire), 64)
	r.SetVersion(version)
	fh, body, err := r.ReadPacket()
	if err != nil {
		t.Fatalf("ReadPacket: %v", err)
	}
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes after the packet", r.Buffered())
	}
	return fh, body
}

// equalLoose is reflect.DeepEqual except that a nil and an empty slice are
// equal: decoding yields empty sub-slices where a literal says nil.
func equalLoose(a, b any) bool { return looseValue(reflect.ValueOf(a), reflect.ValueOf(b)) }

func looseValue(a, b reflect.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !looseValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if !looseValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		return looseValue(a.Elem(), b.Elem())
	}
	return a.Equal(b)
}

// codeOf returns the reason code of a *Error, failing the test otherwise.
func codeOf(t testing.TB, err error) ReasonCode {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *packets.Error", err, err)
	}
	return pe.Code
}

func s(v string) []byte { return []byte(v) }
