//go:build !linux

package main

import "syscall"

// childAttr is nothing special outside Linux: children are stopped when this program
// ends normally or is interrupted.
func childAttr() *syscall.SysProcAttr { return nil }
