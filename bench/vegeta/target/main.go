// Command target is the minimal HTTP server the traffic benchmarks load: it answers
// GET/PUT /kv/{key} with 200 and an X-Chaosaa-Region header and keeps nothing, so that
// the load generator, not the server, is the bottleneck.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	region := flag.String("region", "bench", "value of X-Chaosaa-Region")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The bench reads the bound address from the first line of stdout.
	fmt.Println(ln.Addr().String())
	os.Stdout.Sync()

	body := []byte("v")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Chaosaa-Region", *region)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
	log.Fatal(http.Serve(ln, handler))
}
