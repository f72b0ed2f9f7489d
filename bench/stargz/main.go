// stargz-snapshotter as the start-up benchmark's outside reference: its own filesystem package
// (fs.NewFilesystem with the zero-value config, i.e. upstream's defaults: prefetch and background
// fetch on, 50 kB chunks, directory cache), set up as its snapshotter service does (registry hosts
// as service/resolver's default config makes them, trusted overlay opaque xattrs), mounting an image's
// layers the way containerd drives it through `ctr-remote image rpull` and then `ctr run`:
//   - resolve the reference and fetch the manifest and config (containerd's docker resolver);
//   - label each layer with source.AppendDefaultLabelsHandlerWrapper (as rpull does, 10 MiB
//     prefetch size) and keep the labels containerd passes on (snapshots.FilterInheritedLabels);
//   - Mount each layer on its own FUSE mount, one after the other (containerd's unpacker
//     prepares a layer's snapshot only after its parent's);
//   - Check every layer in parallel (what the container's Prepare does: waits for prefetches).
//
// Usage: stargz [-root CACHEDIR] REF MOUNTDIR
// REF is HOST:PORT/NAME:TAG on a loopback registry (plain HTTP). Layer i (0 = bottom) is mounted
// on MOUNTDIR/i. Prints "ready N" once all N layers are mounted and checked, serves until SIGINT or
// SIGTERM, then unmounts every layer and exits. Built by scripts/build-interop.sh.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/platforms"
	"github.com/containerd/containerd/reference"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/stargz-snapshotter/fs"
	"github.com/containerd/stargz-snapshotter/fs/config"
	"github.com/containerd/stargz-snapshotter/fs/layer"
	"github.com/containerd/stargz-snapshotter/fs/source"
	"github.com/containerd/stargz-snapshotter/snapshot"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"starling-interop/stargzhosts"
)

// rpullPrefetchSize is the prefetch size label `ctr-remote image rpull` sets on every layer; a
// layer's prefetch landmark (or no-prefetch landmark) takes precedence over it.
const rpullPrefetchSize = 10 * 1024 * 1024

func main() {
	root := flag.String("root", "/var/lib/stargz-bench", "cache directory (the snapshotter's fs root)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: stargz [-root CACHEDIR] REF MOUNTDIR")
		os.Exit(2)
	}
	ref, mountDir := flag.Arg(0), flag.Arg(1)
	logrus.SetLevel(logrus.WarnLevel)

	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		cancel()
	}()

	if err := checkLoopback(ref); err != nil {
		fail(err)
	}
	layers, err := layerLabels(ctx, ref)
	if err != nil {
		fail(err)
	}
	fsys, err := fs.NewFilesystem(*root, config.Config{},
		fs.WithGetSources(source.FromDefaultLabels(stargzhosts.RegistryHosts)),
		fs.WithOverlayOpaqueType(layer.OverlayOpaqueTrusted))
	if err != nil {
		fail(err)
	}

	var mounted []string
	// Unmounts in reverse order; a mount still busy (an overlay left on top) is detached instead.
	unmountAll := func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			if err := fsys.Unmount(context.Background(), mounted[i]); err != nil {
				if err := syscall.Unmount(mounted[i], syscall.MNT_DETACH); err != nil {
					fmt.Fprintf(os.Stderr, "stargz: unmount %s: %v\n", mounted[i], err)
				}
			}
		}
	}
	for i, labels := range layers {
		mp := filepath.Join(mountDir, strconv.Itoa(i))
		if err := os.MkdirAll(mp, 0o755); err != nil {
			unmountAll()
			fail(err)
		}
		if err := fsys.Mount(ctx, mp, labels); err != nil {
			unmountAll()
			fail(fmt.Errorf("layer %d: %w", i, err))
		}
		mounted = append(mounted, mp)
		if ctx.Err() != nil {
			unmountAll()
			os.Exit(1)
		}
	}
	if err := checkAll(ctx, fsys, mounted, layers); err != nil {
		unmountAll()
		fail(err)
	}
	fmt.Printf("ready %d\n", len(mounted))
	<-ctx.Done()
	unmountAll()
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "stargz: %v\n", err)
	os.Exit(1)
}

// checkLoopback refuses any registry that is not on this machine.
func checkLoopback(ref string) error {
	spec, err := reference.Parse(ref)
	if err != nil {
		return err
	}
	if ok, err := docker.MatchLocalhost(spec.Hostname()); err != nil || !ok {
		return fmt.Errorf("reference %q: only loopback registries", ref)
	}
	return nil
}

// layerLabels fetches the manifest (the default platform's, from an index) and the config as
// containerd's pull does, and returns the snapshot labels of each layer, bottom first.
func layerLabels(ctx context.Context, ref string) ([]map[string]string, error) {
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost))})
	name, desc, err := resolver.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		return nil, err
	}
	var manifest ocispec.Manifest
	for {
		var doc struct {
			ocispec.Manifest
			Manifests []ocispec.Descriptor `json:"manifests"`
		}
		if err := fetchJSON(ctx, fetcher, desc, &doc); err != nil {
			return nil, err
		}
		if !images.IsIndexType(desc.MediaType) {
			manifest = doc.Manifest
			break
		}
		found := false
		for _, m := range doc.Manifests {
			if m.Platform == nil || platforms.Default().Match(*m.Platform) {
				desc, found = m, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: no manifest for %s", ref, platforms.DefaultString())
		}
	}
	var cfg ocispec.Image
	if err := fetchJSON(ctx, fetcher, manifest.Config, &cfg); err != nil {
		return nil, err
	}
	children := append([]ocispec.Descriptor{manifest.Config}, manifest.Layers...)
	handler := source.AppendDefaultLabelsHandlerWrapper(ref, rpullPrefetchSize)(images.HandlerFunc(
		func(context.Context, ocispec.Descriptor) ([]ocispec.Descriptor, error) { return children, nil }))
	labelled, err := handler.Handle(ctx, desc)
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for _, d := range labelled {
		if images.IsLayerType(d.MediaType) {
			out = append(out, snapshots.FilterInheritedLabels(d.Annotations))
		}
	}
	return out, nil
}

func fetchJSON(ctx context.Context, fetcher remotes.Fetcher, desc ocispec.Descriptor, v interface{}) error {
	rc, err := fetcher.Fetch(ctx, desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// checkAll checks every layer in parallel, as the snapshotter's checkAvailability does before a
// container's rootfs is handed out (Check waits for the layer's prefetch).
func checkAll(ctx context.Context, fsys snapshot.FileSystem, mounted []string, labels []map[string]string) error {
	errs := make([]error, len(mounted))
	var wg sync.WaitGroup
	for i := range mounted {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = fsys.Check(ctx, mounted[i], labels[i])
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return nil
}
