// A reference for bench/fs: go-fuse's loopback filesystem (the FUSE library stargz-snapshotter
// serves its mounts with: low-level protocol, READDIRPLUS) over a local directory, with the cache
// timeouts Starling's mount uses. Usage: loopback DIR MOUNTPOINT; prints "ready" once mounted and
// unmounts on SIGINT or SIGTERM. Built by scripts/build-interop.sh against Debian's go-fuse.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	// GOPATH mode: Debian ships go-fuse v2 under its v1 import path.
	"github.com/hanwen/go-fuse/fs"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: loopback DIR MOUNTPOINT")
		os.Exit(2)
	}
	root, err := fs.NewLoopbackRoot(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	day := 24 * time.Hour
	opts := &fs.Options{EntryTimeout: &day, AttrTimeout: &day, NegativeTimeout: &day}
	opts.MountOptions.DirectMount = true
	opts.MountOptions.AllowOther = true
	opts.MountOptions.FsName = "loopback"
	opts.MountOptions.Options = []string{"ro"}
	server, err := fs.Mount(os.Args[2], root, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		server.Unmount()
	}()
	fmt.Println("ready")
	server.Wait()
}
