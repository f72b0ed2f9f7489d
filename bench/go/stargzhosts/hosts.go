// Package stargzhosts is the registry host list that both stargz programs of the benchmark
// (bench/stargz/, bench/stargz-snapshotter/) give stargz-snapshotter's fs package: what the
// snapshotter service's resolver.RegistryHostsFromConfig(resolver.Config{}) gives for a host
// without a mirror config and without credentials (that package does not build here: it imports
// k8s.io/cri-api). A retrying HTTP client with a 30 s request timeout (the fs package sets its
// retry policy on it), plain HTTP for a loopback host.
package stargzhosts

import (
	"time"

	"github.com/containerd/containerd/reference"
	"github.com/containerd/containerd/remotes/docker"
	rhttp "github.com/hashicorp/go-retryablehttp"
)

// RequestTimeout is upstream's defaultRequestTimeoutSec.
const RequestTimeout = 30 * time.Second

// RegistryHosts is the resolver's host list for ref.
func RegistryHosts(ref reference.Spec) ([]docker.RegistryHost, error) {
	client := rhttp.NewClient()
	client.Logger = nil // upstream disables logging every request
	tr := client.StandardClient()
	tr.Timeout = RequestTimeout
	host := docker.RegistryHost{
		Client:       tr,
		Host:         ref.Hostname(),
		Scheme:       "https",
		Path:         "/v2",
		Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
		Authorizer:   docker.NewDockerAuthorizer(docker.WithAuthClient(tr)),
	}
	if localhost, _ := docker.MatchLocalhost(host.Host); localhost {
		host.Scheme = "http"
	}
	if host.Host == "docker.io" {
		host.Host = "registry-1.docker.io"
	}
	return []docker.RegistryHost{host}, nil
}
