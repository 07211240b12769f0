// chaosaa-kindcheck loads kind cluster configs with kind's own code: the strict v1alpha4
// decoder (unknown fields are errors), kind's defaulting and conversion, and
// Cluster.Validate() -- exactly what `kind create cluster --config FILE` does before it
// talks to Docker. It is built inside a copy of the pinned kind module, because those
// packages are internal to kind.
//
// Usage: chaosaa-kindcheck FILE...
// Prints one JSON object per file: {"file", "ok", "error", "config"} where config is the
// defaulted internal config (nodes with their images and roles, networking).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/internal/apis/config"
	"sigs.k8s.io/kind/pkg/internal/apis/config/encoding"
)

type result struct {
	File         string          `json:"file"`
	OK           bool            `json:"ok"`
	Error        string          `json:"error,omitempty"`
	DefaultImage string          `json:"defaultImage"`
	Config       *config.Cluster `json:"config,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: chaosaa-kindcheck FILE...")
		os.Exit(2)
	}
	failed := false
	enc := json.NewEncoder(os.Stdout)
	for _, path := range os.Args[1:] {
		res := result{File: path, DefaultImage: defaults.Image}
		cfg, err := encoding.Load(path)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			res.Error = err.Error()
			failed = true
		} else {
			res.OK = true
			res.Config = cfg
		}
		if err := enc.Encode(res); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	if failed {
		os.Exit(1)
	}
}
