// An asynchronous HTTP client: libcurl's multi interface driven by a Boost.Asio io_context.
// Sockets are watched through CURLMOPT_SOCKETFUNCTION and the timeout through
// CURLMOPT_TIMERFUNCTION; curl_multi_socket_action runs from Asio handlers. No polling loop, no
// thread per request. Connections are kept alive and reused; HTTP/2 is multiplexed when the
// server offers it (over TLS, by ALPN).
//
// Threading: every method must be called on the io_context's thread (asserted in debug and
// sanitizer builds); callbacks run there, never from inside Start(). The client must be destroyed
// on that thread; requests still running are then dropped without their callbacks.
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
  std::string ca_file;  // empty = the system store
  bool verify_tls = true;
  long max_connections = 64;  // the connection cache (and per-host cap); >= max_in_flight
};

struct HttpRequest {
  std::string method;  // "GET" | "POST"
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // sent when method is POST
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds connect_timeout{5000};
};

struct HttpResponse {
  int status = 0;  // HTTP status; 0 = transport failure (see error)
  std::string body;
  std::string retry_after;  // the Retry-After header, when present
  // Transport failures only: false when no byte of the request can have reached the server
  // (connection refused, DNS, TLS handshake, connect timeout), true otherwise.
  bool maybe_sent = false;
  bool timed_out = false;
  bool cancelled = false;  // Abort() or AbortAll()
  std::string error;       // curl's description of a transport failure
  double seconds = 0;      // total time of the exchange
};

// What the gateway client needs of HTTP. HttpClient is the real one; the engine tests put a
// simulated gateway behind this interface to run in fake time.
class HttpTransport {
 public:
  using Callback = std::function<void(HttpResponse)>;
  virtual ~HttpTransport() = default;

  // Starts a request; `done` runs once, later, with its response. Returns a handle for Abort().
  virtual uint64_t Start(HttpRequest request, Callback done) = 0;
  // Ends a request early; its callback runs (posted) with cancelled = true. No-op for unknown ids.
  virtual void Abort(uint64_t handle) = 0;
  virtual void AbortAll() = 0;
  virtual size_t active() const = 0;
  // Resizes the idle-connection cache (e.g. after max_in_flight changes).
  virtual void SetMaxConnections(long n) = 0;
};

class HttpClient final : public HttpTransport {
 public:
  HttpClient(boost::asio::io_context& io, HttpClientOptions options);
  ~HttpClient() override;
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  uint64_t Start(HttpRequest request, Callback done) override;
  void Abort(uint64_t handle) override;
  void AbortAll() override;
  size_t active() const override;
  void SetMaxConnections(long n) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace payoutd
