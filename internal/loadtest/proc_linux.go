package main

import "syscall"

// childAttr makes a child process die with this one, even if this one is killed without
// a chance to clean up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
