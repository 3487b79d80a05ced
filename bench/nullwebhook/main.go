// The null webhook: a standard-library HTTPS server that decodes an AdmissionReview and answers
// "allowed", nothing else. bench/apiserver.py registers it with the chart's webhook configurations to
// measure the floor of any webhook on the machine: what the apiserver's calls cost by themselves.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	cert := flag.String("cert", "", "serving certificate (PEM)")
	key := flag.String("key", "", "serving key (PEM)")
	flag.Parse()

	answer := func(w http.ResponseWriter, r *http.Request) {
		// Decoding the review (for its uid) is the least any webhook must do.
		var in struct {
			Request struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		uid, _ := json.Marshal(in.Request.UID)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":` +
			string(uid) + `,"allowed":true}}`))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mutate", answer)
	mux.HandleFunc("POST /validate", answer)
	// HTTP/1.1 only, like uvicorn: the comparison is of servers, not of protocols.
	server := &http.Server{Addr: *addr, Handler: mux,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	log.Fatal(server.ListenAndServeTLS(*cert, *key))
}
