package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/x0a1b/promptmq/conf"
)

// The example cluster of deploy/cluster loads, and each node routes to the two others, which
// the compose file runs under those names.
func TestDeployClusterConfigs(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "cluster")
	compose, err := os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		cfg, err := conf.Load(filepath.Join(dir, fmt.Sprintf("node%d.toml", i)))
		if err != nil {
			t.Fatalf("node%d.toml: %v", i, err)
		}
		if !cfg.Cluster.Enabled || cfg.Cluster.NodeID != fmt.Sprintf("node-%d", i) {
			t.Errorf("node%d.toml: cluster %+v", i, cfg.Cluster)
		}
		for j := 1; j <= 3; j++ {
			peer := fmt.Sprintf("promptmq-%d:7946", j)
			if listed := strings.Contains(cfg.Cluster.Peers, peer); listed != (i != j) {
				t.Errorf("node%d.toml: peer %s listed %v", i, peer, listed)
			}
			if !strings.Contains(string(compose), fmt.Sprintf("promptmq-%d:", j)) || !strings.Contains(string(compose), fmt.Sprintf("./node%d.toml:", j)) {
				t.Errorf("docker-compose.yml lacks node %d", j)
			}
		}
	}
}
