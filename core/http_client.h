// An asynchronous HTTP client: libcurl's multi interface driven by a Boost.Asio io_context.
// Sockets are watched through CURLMOPT_SOCKETFUNCTION and the timeout through
// CURLMOPT_TIMERFUNCTION; curl_multi_socket_action runs from Asio handlers. No polling loop, no
// thread per request. Connections are kept alive and reused; HTTP/2 is multiplexed when the
// server offers it (over TLS, by ALPN).
//
// Threading: every method must be called on the io_context's thread; callbacks run there, never
// from inside Start(). The client must be destroyed on that thread; requests still running are
// then dropped without their callbacks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

namespace payoutd {

struct HttpClientOptions {
  std::string ca_file;       // empty = the system store
  bool verify_tls = true;
  long max_connections = 64; // the connection cache (and per-host cap); >= max_in_flight
};

struct HttpRequest {
  std::string method;                 // "GET" | "POST"
  std::string url;
  std::vector<std::string> headers;   // "Name: value"
  std::string body;                   // sent when method is POST
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds connect_timeout{5000};
};

struct HttpResponse {
  int status = 0;            // HTTP status; 0 = transport failure (see error)
  std::string body;
  std::string retry_after;   // the Retry-After header, when present
  // Transport failures only: false when no byte of the request can have reached the server
  // (connection refused, DNS, TLS handshake, connect timeout), true otherwise.
  bool maybe_sent = false;
  bool timed_out = false;
  bool cancelled = false;    // Abort() or AbortAll()
  std::string error;         // curl's description of a transport failure
  double seconds = 0;        // total time of the exchange
};

class HttpClient {
 public:
  using Callback = std::function<void(HttpResponse)>;

  HttpClient(boost::asio::io_context& io, HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a request; `done` runs once, later, with its response. Returns a handle for Abort().
  uint64_t Start(HttpRequest request, Callback done);
  // Ends a request early; its callback runs (posted) with cancelled = true. No-op for unknown ids.
  void Abort(uint64_t handle);
  void AbortAll();
  size_t active() const;
  // Resizes the idle-connection cache (e.g. after max_in_flight changes).
  void SetMaxConnections(long n);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace payoutd
