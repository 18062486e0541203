package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/x0a1b/promptmq/cluster"
	"github.com/x0a1b/promptmq/conf"
	"github.com/x0a1b/promptmq/engine"
)

// joinCluster starts this process's cluster node and attaches the broker to it, when
// cluster.enabled is set; otherwise it does nothing and no NATS code runs. The returned stop
// leaves the cluster and must run after the broker stopped serving.
func joinCluster(cfg *conf.Config, b *engine.Broker, logger *slog.Logger) (stop func(), err error) {
	if !cfg.Cluster.Enabled {
		return func() {}, nil
	}
	var peers []string
	for _, p := range strings.Split(cfg.Cluster.Peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			peers = append(peers, p)
		}
	}
	node, err := cluster.Start(cluster.Config{
		NodeID:  cfg.Cluster.NodeID,
		DataDir: cfg.Storage.DataDir,
		Bind:    cfg.Cluster.Bind,
		Peers:   peers,
		NATSURL: cfg.Cluster.NATSURL,
		Logger:  logger,
	}, b.ClusterLocal())
	if err != nil {
		return nil, fmt.Errorf("join cluster: %w", err)
	}
	b.AttachCluster(node)
	return node.Stop, nil
}
