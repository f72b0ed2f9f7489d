// stargz-snapshotter's own containerd snapshotter, for the start-up benchmark's containerd-stargz
// mode: what upstream's cmd/containerd-stargz-grpc (0.12) does, without its `service` package
// (which, through service/resolver, needs k8s.io/cri-api: not in Debian bookworm). As there:
//   - the filesystem (fs.NewFilesystem under ROOT/stargz) with the zero-value config, which is
//     upstream's default when /etc/containerd-stargz-grpc/config.toml is absent: prefetch and
//     background fetch on, 50 kB chunks, directory cache;
//   - layer sources from CRI's labels, then from ctr-remote's default labels (service/cri.go's
//     sourceFromCRILabels, source.FromDefaultLabels);
//   - registry hosts as service/resolver.RegistryHostsFromConfig makes them from an empty config
//     (a retrying HTTP client, 30 s request timeout, plain HTTP for loopback hosts). Credentials
//     (upstream's docker config keychain) are left out: its package imports service/resolver too,
//     and the benchmark's registry has no authentication;
//   - the overlay opaque xattr type from overlayutils.NeedsUserXAttr;
//   - the snapshotter (snapshot.NewSnapshotter under ROOT/snapshotter, AsynchronousRemove) served
//     by containerd's contrib/snapshotservice on a gRPC unix socket;
//   - logrus JSON logs on stderr at -log-level (default info: each lazy mount logs
//     "preparing filesystem mount at mountpoint=…");
//   - SIGINT: close the snapshotter (unmounts every layer) and exit; SIGTERM: exit, mounts left.
//
// Usage: stargz-snapshotter [-address SOCKET] [-root DIR] [-log-level LEVEL]
// Built by scripts/build-interop.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/reference"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/overlay/overlayutils"
	stargzfs "github.com/containerd/stargz-snapshotter/fs"
	"github.com/containerd/stargz-snapshotter/fs/config"
	"github.com/containerd/stargz-snapshotter/fs/layer"
	"github.com/containerd/stargz-snapshotter/fs/source"
	snbase "github.com/containerd/stargz-snapshotter/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"starling-interop/stargzhosts"
)

const (
	defaultAddress = "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock"
	defaultRootDir = "/var/lib/containerd-stargz-grpc"

	// CRI's labels (service/cri.go).
	targetRefLabel         = "containerd.io/snapshot/cri.image-ref"
	targetDigestLabel      = "containerd.io/snapshot/cri.layer-digest"
	targetImageLayersLabel = "containerd.io/snapshot/cri.image-layers"
)

func main() {
	address := flag.String("address", defaultAddress, "address for the snapshotter's GRPC server")
	rootDir := flag.String("root", defaultRootDir, "path to the root directory for this snapshotter")
	logLevel := flag.String("log-level", logrus.InfoLevel.String(), "set the logging level [trace, debug, info, warn, error, fatal, panic]")
	flag.Parse()
	lvl, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stargz-snapshotter: -log-level: %v\n", err)
		os.Exit(2)
	}
	logrus.SetLevel(lvl)
	logrus.SetFormatter(&logrus.JSONFormatter{TimestampFormat: log.RFC3339NanoFixed})
	ctx := log.WithLogger(context.Background(), log.L)

	if err := overlayutils.Supported(filepath.Join(*rootDir, "snapshotter")); err != nil {
		log.G(ctx).WithError(err).Fatalf("snapshotter is not supported")
	}
	rs, err := newSnapshotter(ctx, *rootDir)
	if err != nil {
		log.G(ctx).WithError(err).Fatalf("failed to configure snapshotter")
	}

	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(rs))
	if err := os.MkdirAll(filepath.Dir(*address), 0o700); err != nil {
		log.G(ctx).WithError(err).Fatalf("failed to create directory %q", filepath.Dir(*address))
	}
	if err := os.RemoveAll(*address); err != nil {
		log.G(ctx).WithError(err).Fatalf("failed to remove %q", *address)
	}
	l, err := net.Listen("unix", *address)
	if err != nil {
		log.G(ctx).WithError(err).Fatalf("error on listen socket %q", *address)
	}
	errCh := make(chan error, 1)
	go func() {
		if err := rpc.Serve(l); err != nil {
			errCh <- fmt.Errorf("error on serving via socket %q: %w", *address, err)
		}
	}()
	log.G(ctx).WithField("address", *address).Info("serving")

	sigCh := make(chan os.Signal, 1)
	signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM)
	var s os.Signal
	select {
	case s = <-sigCh:
		log.G(ctx).Infof("Got %v", s)
	case err := <-errCh:
		log.G(ctx).WithError(err).Fatal("failed to serve")
	}
	if s == syscall.SIGINT {
		log.G(ctx).Debug("Closing the snapshotter")
		rs.Close()
	}
	log.G(ctx).Info("Exiting")
}

// newSnapshotter is service.NewStargzSnapshotterService with an empty config.
func newSnapshotter(ctx context.Context, root string) (snapshots.Snapshotter, error) {
	snRoot := filepath.Join(root, "snapshotter")
	userxattr, err := overlayutils.NeedsUserXAttr(snRoot)
	if err != nil {
		log.G(ctx).WithError(err).Warnf("cannot detect whether \"userxattr\" option needs to be used, assuming to be %v", userxattr)
	}
	opq := layer.OverlayOpaqueTrusted
	if userxattr {
		opq = layer.OverlayOpaqueUser
	}
	fs, err := stargzfs.NewFilesystem(filepath.Join(root, "stargz"), config.Config{},
		stargzfs.WithGetSources(sources(sourceFromCRILabels(stargzhosts.RegistryHosts), source.FromDefaultLabels(stargzhosts.RegistryHosts))),
		stargzfs.WithOverlayOpaqueType(opq))
	if err != nil {
		return nil, fmt.Errorf("failed to configure filesystem: %w", err)
	}
	sn, err := snbase.NewSnapshotter(ctx, snRoot, fs, snbase.AsynchronousRemove)
	if err != nil {
		return nil, fmt.Errorf("failed to create new snapshotter: %w", err)
	}
	return sn, nil
}

// sources tries each way of finding a layer's source in turn (service/service.go).
func sources(ps ...source.GetSources) source.GetSources {
	return func(labels map[string]string) ([]source.Source, error) {
		var errs []string
		for _, p := range ps {
			src, err := p(labels)
			if err == nil {
				return src, nil
			}
			errs = append(errs, err.Error())
		}
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
}

// sourceFromCRILabels is service/cri.go's.
func sourceFromCRILabels(hosts source.RegistryHosts) source.GetSources {
	return func(labels map[string]string) ([]source.Source, error) {
		refStr, ok := labels[targetRefLabel]
		if !ok {
			return nil, fmt.Errorf("reference hasn't been passed")
		}
		refspec, err := reference.Parse(refStr)
		if err != nil {
			return nil, err
		}
		digestStr, ok := labels[targetDigestLabel]
		if !ok {
			return nil, fmt.Errorf("digest hasn't been passed")
		}
		target, err := digest.Parse(digestStr)
		if err != nil {
			return nil, err
		}
		var layersDgst []digest.Digest
		if l, ok := labels[targetImageLayersLabel]; ok {
			for _, l := range strings.Split(l, ",") {
				d, err := digest.Parse(l)
				if err != nil {
					return nil, err
				}
				if d.String() != target.String() {
					layersDgst = append(layersDgst, d)
				}
			}
		}
		var layers []ocispec.Descriptor
		for _, dgst := range append([]digest.Digest{target}, layersDgst...) {
			layers = append(layers, ocispec.Descriptor{Digest: dgst})
		}
		return []source.Source{{
			Hosts:    hosts,
			Name:     refspec,
			Target:   ocispec.Descriptor{Digest: target},
			Manifest: ocispec.Manifest{Layers: layers},
		}}, nil
	}
}
