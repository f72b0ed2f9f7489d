// Command zstdchunked drives Debian's containers/storage 1.43 zstd:chunked code for Starling's
// interop tests and benchmark:
//
//	zstdchunked read BLOB CHECKSUM POSITION   read a blob through containers/storage's own manifest
//	                                          reader (checksum/position handed over under the
//	                                          io.containers.* keys 1.43 knows), then decompress and
//	                                          verify every regular file's chunks; prints one JSON line
//	                                          per file and a summary line
//	zstdchunked compress [-level N] IN.tar OUT  compress with compressor.ZstdCompressor (older
//	                                          layout); prints the layer annotations as JSON
//	zstdchunked chunks FILE                   the chunk boundaries the Go compressor cuts for FILE's
//	                                          content, as JSON
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
	_ "unsafe" // for go:linkname

	"github.com/containers/storage/pkg/chunked"
	"github.com/containers/storage/pkg/chunked/compressor"
	"github.com/klauspost/compress/zstd"
)

// Keys containers/storage 1.43 reads (the pre-2022-11 names).
const (
	legacyChecksumKey = "io.containers.zstd-chunked.manifest-checksum"
	legacyPositionKey = "io.containers.zstd-chunked.manifest-position"
)

//go:linkname readZstdChunkedManifest github.com/containers/storage/pkg/chunked.readZstdChunkedManifest
func readZstdChunkedManifest(blobStream chunked.ImageSourceSeekable, blobSize int64, annotations map[string]string) ([]byte, int64, error)

//go:linkname unmarshalToc github.com/containers/storage/pkg/chunked.unmarshalToc
func unmarshalToc(manifest []byte) (*tocLayout, error)

// tocLayout and fileMetadata mirror the memory layout of containers/storage 1.43's
// internal.TOC / internal.FileMetadata (an internal package cannot be imported), so the
// result of the linked unmarshalToc can be read.
type tocLayout struct {
	Version    int
	Entries    []fileMetadata
	StringsBuf bytes.Buffer
}

type fileMetadata struct {
	Type        string
	Name        string
	Linkname    string
	Mode        int64
	Size        int64
	UID         int
	GID         int
	ModTime     *time.Time
	AccessTime  *time.Time
	ChangeTime  *time.Time
	Devmajor    int64
	Devminor    int64
	Xattrs      map[string]string
	Digest      string
	Offset      int64
	EndOffset   int64
	ChunkSize   int64
	ChunkOffset int64
	ChunkDigest string
	ChunkType   string
	Chunks      []*fileMetadata
}

// fileBlob serves GetBlobAt from an in-memory blob.
type fileBlob struct{ data []byte }

func (b fileBlob) GetBlobAt(chunks []chunked.ImageSourceChunk) (chan io.ReadCloser, chan error, error) {
	streams := make(chan io.ReadCloser, len(chunks))
	errs := make(chan error)
	for _, c := range chunks {
		if c.Offset+c.Length > uint64(len(b.data)) || c.Offset+c.Length < c.Offset {
			return nil, nil, fmt.Errorf("range %d+%d outside blob of %d bytes", c.Offset, c.Length, len(b.data))
		}
		streams <- io.NopCloser(bytes.NewReader(b.data[c.Offset : c.Offset+c.Length]))
	}
	close(streams)
	// errs stays open: 1.43's reader selects on both channels, and a closed errs would win half the
	// time with a nil error (an empty manifest).
	return streams, errs, nil
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(s[:])
}

type chunkOut struct {
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	Type   string `json:"type"`
}

type fileOut struct {
	Name   string     `json:"name"`
	Size   int64      `json:"size"`
	Digest string     `json:"digest"`
	Chunks []chunkOut `json:"chunks"`
}

// readBlob verifies every regular file of a zstd:chunked blob: each chunk's compressed range
// decompresses to chunkSize bytes with the chunk's digest, and the file to its size and digest.
func readBlob(path, checksum, position string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	annotations := map[string]string{legacyChecksumKey: checksum, legacyPositionKey: position}
	manifest, tocOffset, err := readZstdChunkedManifest(fileBlob{data}, int64(len(data)), annotations)
	if err != nil {
		return fmt.Errorf("containers/storage manifest reader: %w", err)
	}
	toc, err := unmarshalToc(manifest)
	if err != nil {
		return fmt.Errorf("containers/storage unmarshalToc: %w", err)
	}
	if toc.Version != 1 || len(toc.Entries) == 0 {
		return fmt.Errorf("unexpected TOC: version %d, %d entries", toc.Version, len(toc.Entries))
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return err
	}
	defer dec.Close()
	out := json.NewEncoder(os.Stdout)
	files, chunks := 0, 0
	entries := toc.Entries
	for i := 0; i < len(entries); i++ {
		e := entries[i]
		if e.Type != "reg" {
			if e.Type == "chunk" {
				return fmt.Errorf("chunk entry for %q without a preceding reg entry", e.Name)
			}
			continue
		}
		// The reg entry and the chunk entries that follow it describe the file's chunks; each
		// chunk ends where the next begins, the last one at the reg entry's endOffset.
		parts := []fileMetadata{e}
		for i+1 < len(entries) && entries[i+1].Type == "chunk" {
			i++
			parts = append(parts, entries[i])
		}
		fo := fileOut{Name: e.Name, Size: e.Size, Chunks: []chunkOut{}}
		var content []byte
		for j, p := range parts {
			end := e.EndOffset
			if j+1 < len(parts) {
				end = parts[j+1].Offset
			}
			if e.Size == 0 {
				break
			}
			if p.Offset <= 0 || end <= p.Offset || end > tocOffset {
				return fmt.Errorf("%s: chunk %d has a bad range [%d,%d)", e.Name, j, p.Offset, end)
			}
			plain, err := dec.DecodeAll(data[p.Offset:end], nil)
			if err != nil {
				return fmt.Errorf("%s: chunk %d: %w", e.Name, j, err)
			}
			size := p.ChunkSize
			if len(parts) == 1 {
				size = e.Size
			}
			if int64(len(plain)) != size {
				return fmt.Errorf("%s: chunk %d decompresses to %d bytes, want %d", e.Name, j, len(plain), size)
			}
			if len(parts) > 1 {
				if p.ChunkOffset != int64(len(content)) {
					return fmt.Errorf("%s: chunk %d at %d, want %d", e.Name, j, p.ChunkOffset, len(content))
				}
				if got := sha(plain); got != p.ChunkDigest {
					return fmt.Errorf("%s: chunk %d digest %s, want %s", e.Name, j, got, p.ChunkDigest)
				}
			}
			fo.Chunks = append(fo.Chunks, chunkOut{Offset: int64(len(content)), Size: size, Type: p.ChunkType})
			content = append(content, plain...)
			chunks++
		}
		if int64(len(content)) != e.Size {
			return fmt.Errorf("%s: content is %d bytes, want %d", e.Name, len(content), e.Size)
		}
		fo.Digest = sha(content)
		if e.Size > 0 && fo.Digest != e.Digest {
			return fmt.Errorf("%s: digest %s, want %s", e.Name, fo.Digest, e.Digest)
		}
		if err := out.Encode(fo); err != nil {
			return err
		}
		files++
	}
	return out.Encode(map[string]int{"files": files, "chunks": chunks, "entries": len(entries)})
}

// compress writes IN.tar as a zstd:chunked blob with the Go compressor and prints its annotations.
func compress(in, outPath string, level int) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := outPath + ".tmp"
	dst, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	annotations := map[string]string{}
	w, err := compressor.ZstdCompressor(dst, annotations, &level)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, src); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, outPath); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(annotations)
}

// chunks prints the chunks the Go compressor cuts for a file's content: the file is put in a
// one-entry GNU tar, compressed with compressor.ZstdCompressor and its TOC read back.
func chunks(path string) error {
	content, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg, Format: tar.FormatGNU}); err != nil {
		return err
	}
	if _, err := tw.Write(content); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	var blob bytes.Buffer
	annotations := map[string]string{}
	level := 1
	w, err := compressor.ZstdCompressor(&blob, annotations, &level)
	if err != nil {
		return err
	}
	if _, err := w.Write(tarBuf.Bytes()); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	manifest, _, err := readZstdChunkedManifest(fileBlob{blob.Bytes()}, int64(blob.Len()), annotations)
	if err != nil {
		return err
	}
	toc, err := unmarshalToc(manifest)
	if err != nil {
		return err
	}
	result := []chunkOut{}
	for _, e := range toc.Entries {
		if e.Name != "f" {
			continue
		}
		size := e.ChunkSize
		if size == 0 {
			size = e.Size // a single-chunk file carries no chunk metadata
		}
		result = append(result, chunkOut{Offset: e.ChunkOffset, Size: size, Type: e.ChunkType})
	}
	return json.NewEncoder(os.Stdout).Encode(result)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: zstdchunked read BLOB CHECKSUM POSITION | compress [-level N] IN.tar OUT | chunks FILE")
		os.Exit(2)
	}
	var err error
	switch args := os.Args[2:]; os.Args[1] {
	case "read":
		if len(args) != 3 {
			err = errors.New("read needs BLOB CHECKSUM POSITION")
		} else {
			err = readBlob(args[0], args[1], args[2])
		}
	case "compress":
		fs := flag.NewFlagSet("compress", flag.ExitOnError)
		level := fs.Int("level", 10, "zstd level")
		_ = fs.Parse(args)
		if fs.NArg() != 2 {
			err = errors.New("compress needs IN.tar OUT")
		} else {
			err = compress(fs.Arg(0), fs.Arg(1), *level)
		}
	case "chunks":
		if len(args) != 1 {
			err = errors.New("chunks needs FILE")
		} else {
			err = chunks(args[0])
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "zstdchunked:", err)
		os.Exit(1)
	}
}
