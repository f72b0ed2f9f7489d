// gzip compresses stdin to stdout with Go's compress/gzip, as Go-built images (docker, buildkit,
// go-containerregistry) write their layers: `gzip [-level N] [-members N]`. With -members N the input
// is cut into N near-equal parts, each written as its own gzip member (a multi-member blob).
package main

import (
	"compress/gzip"
	"flag"
	"io"
	"log"
	"os"
)

func main() {
	level := flag.Int("level", gzip.DefaultCompression, "compression level (-1, 0-9)")
	members := flag.Int("members", 1, "number of gzip members")
	flag.Parse()
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < *members; i++ {
		part := data[len(data)*i / *members : len(data)*(i+1) / *members]
		w, err := gzip.NewWriterLevel(os.Stdout, *level)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := w.Write(part); err != nil {
			log.Fatal(err)
		}
		if err := w.Close(); err != nil {
			log.Fatal(err)
		}
	}
}
