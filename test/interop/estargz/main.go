// estargz: the Go reference implementation (Debian's stargz-snapshotter 0.12.0 estargz package)
// driven from Starling's tests and benchmarks.
//
//	estargz verify BLOB TOCDIGEST
//	    estargz.Open, VerifyTOC against TOCDIGEST, then read every regular file through the
//	    reader, check its whole-file digest and verify every chunk with the TOC's verifier.
//	    Prints a JSON summary with every entry as the reader sees it.
//	estargz build IN.tar OUT.blob [-chunk-size N] [-level N] [-prioritize a,b] [-procs N]
//	    estargz.Build (GOMAXPROCS pinned to -procs, default 1, so the output is reproducible;
//	    0 keeps Go's default). Prints {"tocDigest","diffID","digest","size"}.
//	    0.12.0 cannot write the legacy 47-byte footer; tests make one by rewriting the footer.
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

type entryJSON struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Size     int64             `json:"size"`
	Mode     int64             `json:"mode"`
	UID      int               `json:"uid"`
	GID      int               `json:"gid"`
	Uname    string            `json:"userName"`
	Gname    string            `json:"groupName"`
	ModTime  string            `json:"modtime"`
	LinkName string            `json:"linkName"`
	DevMajor int               `json:"devMajor"`
	DevMinor int               `json:"devMinor"`
	Xattrs   map[string]string `json:"xattrs"`
	Digest   string            `json:"digest"`
	// SHA256 of the bytes read through the Go reader (regular files).
	ReadDigest string `json:"readDigest,omitempty"`
}

type verifyJSON struct {
	TOCDigest      string      `json:"tocDigest"`
	Entries        []entryJSON `json:"entries"`
	RegularFiles   int         `json:"regularFiles"`
	VerifiedChunks int         `json:"verifiedChunks"`
	BytesRead      int64       `json:"bytesRead"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "estargz: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: estargz verify BLOB TOCDIGEST | estargz build IN.tar OUT.blob [flags]")
	}
	switch os.Args[1] {
	case "verify":
		if len(os.Args) != 4 {
			fail("usage: estargz verify BLOB TOCDIGEST")
		}
		if err := verify(os.Args[2], os.Args[3]); err != nil {
			fail("verify: %v", err)
		}
	case "build":
		fs := flag.NewFlagSet("build", flag.ExitOnError)
		chunkSize := fs.Int("chunk-size", 0, "chunk size (0: Go's default 4 MiB)")
		level := fs.Int("level", 9, "gzip level")
		prioritize := fs.String("prioritize", "", "comma-separated prioritized files")
		procs := fs.Int("procs", 1, "GOMAXPROCS (Build splits the tar into that many parts); 0: Go's default")
		if len(os.Args) < 4 {
			fail("usage: estargz build IN.tar OUT.blob [flags]")
		}
		fs.Parse(os.Args[4:])
		if *procs > 0 {
			runtime.GOMAXPROCS(*procs)
		}
		if err := build(os.Args[2], os.Args[3], *chunkSize, *level, *prioritize); err != nil {
			fail("build: %v", err)
		}
	default:
		fail("unknown subcommand %q", os.Args[1])
	}
}

func build(in, out string, chunkSize, level int, prioritize string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	opts := []estargz.Option{estargz.WithCompressionLevel(level)}
	if chunkSize > 0 {
		opts = append(opts, estargz.WithChunkSize(chunkSize))
	}
	if prioritize != "" {
		opts = append(opts, estargz.WithPrioritizedFiles(strings.Split(prioritize, ",")))
	}
	blob, err := estargz.Build(io.NewSectionReader(f, 0, st.Size()), opts...)
	if err != nil {
		return err
	}
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(o, h), blob)
	if err != nil {
		return err
	}
	if err := o.Close(); err != nil {
		return err
	}
	if err := blob.Close(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"tocDigest": blob.TOCDigest().String(),
		"diffID":    blob.DiffID().String(),
		"digest":    fmt.Sprintf("sha256:%x", h.Sum(nil)),
		"size":      n,
	})
}

func verify(blobPath, tocDigest string) error {
	f, err := os.Open(blobPath)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	want, err := digest.Parse(tocDigest)
	if err != nil {
		return err
	}
	r, err := estargz.Open(io.NewSectionReader(f, 0, st.Size()))
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	verifier, err := r.VerifyTOC(want)
	if err != nil {
		return fmt.Errorf("VerifyTOC: %w", err)
	}
	res := verifyJSON{TOCDigest: r.TOCDigest().String()}
	root, ok := r.Lookup("")
	if !ok {
		return fmt.Errorf("no root directory")
	}
	var walk func(dir string, e *estargz.TOCEntry) error
	walk = func(dir string, e *estargz.TOCEntry) error {
		var names []string
		children := map[string]*estargz.TOCEntry{}
		e.ForeachChild(func(base string, c *estargz.TOCEntry) bool {
			names = append(names, base)
			children[base] = c
			return true
		})
		sort.Strings(names)
		for _, base := range names {
			c := children[base]
			name := path.Join(dir, base)
			ej, err := describe(r, verifier, name, c, &res)
			if err != nil {
				return err
			}
			res.Entries = append(res.Entries, ej)
			if c.Type == "dir" {
				if err := walk(name, c); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk("", root); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// describe reports one entry; for regular files it reads the content through the reader and
// verifies the whole-file digest and each chunk against the verifier from VerifyTOC.
func describe(r *estargz.Reader, v estargz.TOCEntryVerifier, name string, e *estargz.TOCEntry, res *verifyJSON) (entryJSON, error) {
	ej := entryJSON{
		Name: name, Type: e.Type, Size: e.Size, Mode: e.Mode, UID: e.UID, GID: e.GID,
		Uname: e.Uname, Gname: e.Gname, ModTime: e.ModTime3339, LinkName: e.LinkName,
		DevMajor: e.DevMajor, DevMinor: e.DevMinor, Digest: e.Digest, Xattrs: map[string]string{},
	}
	for k, val := range e.Xattrs {
		ej.Xattrs[k] = base64.StdEncoding.EncodeToString(val)
	}
	if e.Type != "reg" {
		return ej, nil
	}
	res.RegularFiles++
	sr, err := r.OpenFile(name)
	if err != nil {
		return ej, fmt.Errorf("OpenFile %q: %w", name, err)
	}
	// Read chunk by chunk: the reader decompresses from the chunk start on every ReadAt, so one
	// ReadAt per chunk keeps this linear. Each chunk goes to its verifier and the whole-file hash.
	h := sha256.New()
	for off := int64(0); off < e.Size; {
		ce, ok := r.ChunkEntryForOffset(name, off)
		if !ok {
			return ej, fmt.Errorf("%q: no chunk at offset %d", name, off)
		}
		if ce.ChunkOffset != off || ce.ChunkSize <= 0 {
			return ej, fmt.Errorf("%q: chunk for offset %d starts at %d (size %d)", name, off, ce.ChunkOffset, ce.ChunkSize)
		}
		cv, err := v.Verifier(ce)
		if err != nil {
			return ej, fmt.Errorf("%q: verifier at offset %d: %w", name, off, err)
		}
		buf := make([]byte, ce.ChunkSize)
		if _, err := sr.ReadAt(buf, ce.ChunkOffset); err != nil && !(err == io.EOF && ce.ChunkOffset+ce.ChunkSize == e.Size) {
			return ej, fmt.Errorf("%q: read chunk at %d: %w", name, ce.ChunkOffset, err)
		}
		cv.Write(buf)
		h.Write(buf)
		if !cv.Verified() {
			return ej, fmt.Errorf("%q: chunk at offset %d (size %d) does not match its chunkDigest", name, ce.ChunkOffset, ce.ChunkSize)
		}
		res.VerifiedChunks++
		res.BytesRead += ce.ChunkSize
		off += ce.ChunkSize
	}
	ej.ReadDigest = fmt.Sprintf("sha256:%x", h.Sum(nil))
	if e.Digest != "" && ej.ReadDigest != e.Digest {
		return ej, fmt.Errorf("%q: content digest %s, TOC says %s", name, ej.ReadDigest, e.Digest)
	}
	return ej, nil
}
