package main

import (
	"runtime/debug"
	"testing"
)

func TestVersionLine(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "4b25ac093c8c"}, {Key: "vcs.time", Value: "2026-12-01T16:20:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got, want := versionLine(bi), "cartclass v0.4.0 revision 4b25ac093c8c (with uncommitted changes) of 2026-12-01T16:20:00Z, go1.26.0"; got != want {
		t.Errorf("versionLine = %q, want %q", got, want)
	}
	if got, want := versionLine(&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}}), "cartclass (devel), go1.26.0"; got != want {
		t.Errorf("without VCS information: %q, want %q", got, want)
	}
	if got := versionLine(nil); got != "cartclass (no build information)" {
		t.Errorf("without build information: %q", got)
	}
}
