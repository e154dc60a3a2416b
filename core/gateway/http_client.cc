#include "core/gateway/http_client.h"

#include <curl/curl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "core/base/liveness.h"
#include "core/base/status.h"
#include "core/base/thread_checker.h"

namespace payoutd {
namespace {

namespace asio = boost::asio;

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool NeverConnected(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: return true;
    default: return false;
  }
}

}  // namespace

// One watched socket. Waits are never cancelled to change interest: a wait that completes while
// its direction is no longer wanted is dropped, and at most one wait per direction is pending, so a
// readiness edge is never lost while curl still wants that direction.
struct Watch {
  explicit Watch(asio::io_context& io) : sd(io) {}
  asio::posix::stream_descriptor sd;
  int want = 0;          // CURL_POLL_IN | CURL_POLL_OUT
  bool owned = false;    // opened by our CURLOPT_OPENSOCKETFUNCTION: we close it
  bool closed = false;   // closed or released: pending waits must do nothing
  bool reading = false;  // a read wait is pending
  bool writing = false;
};

struct Transfer {
  uint64_t id = 0;
  CURL* easy = nullptr;
  // The header list curl reads, built in place over header_text (no allocation per header).
  std::vector<std::string> header_text;
  std::vector<curl_slist> headers;
  std::string request_body;  // CURLOPT_POSTFIELDS points here: must live as long as the transfer
  HttpResponse response;
  HttpClient::Callback done;
  std::chrono::steady_clock::time_point started;
  char error[CURL_ERROR_SIZE] = {0};
};

struct HttpClient::Impl {
  Impl(asio::io_context& io_, HttpClientOptions options_)
      : io(io_), options(std::move(options_)), timer(io_) {}

  asio::io_context& io;
  HttpClientOptions options;
  CURLM* multi = nullptr;
  asio::steady_timer timer;
  std::map<curl_socket_t, std::shared_ptr<Watch>> watches;
  std::unordered_map<uint64_t, std::unique_ptr<Transfer>> transfers;
  std::vector<CURL*> idle_easies;
  uint64_t next_id = 1;
  std::optional<std::chrono::steady_clock::time_point> curl_deadline;  // curl's current timeout
  bool timer_armed = false;
  std::chrono::steady_clock::time_point timer_at;
  uint64_t timer_generation = 0;
  bool run_now_posted = false;
  ThreadChecker io_thread;  // binds to the io thread at the first call
  // Handlers check it first: once the client is gone they do nothing. Last: ends first.
  Liveness alive;

  // --- curl callbacks (static trampolines) ---
  static curl_socket_t OpenSocket(void* clientp, curlsocktype purpose, curl_sockaddr* address) {
    auto* self = static_cast<Impl*>(clientp);
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    const int fd = ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    auto w = std::make_shared<Watch>(self->io);
    boost::system::error_code ec;
    w->sd.assign(fd, ec);
    if (ec) {
      ::close(fd);
      return CURL_SOCKET_BAD;
    }
    w->owned = true;
    self->watches[fd] = std::move(w);
    return fd;
  }

  static int CloseSocket(void* clientp, curl_socket_t fd) {
    auto* self = static_cast<Impl*>(clientp);
    auto it = self->watches.find(fd);
    if (it == self->watches.end() || !it->second->owned) return ::close(fd);
    std::shared_ptr<Watch> w = std::move(it->second);
    self->watches.erase(it);
    w->closed = true;
    w->want = 0;
    boost::system::error_code ec;
    w->sd.close(ec);  // deregisters from the reactor, aborts pending waits, closes the fd
    return ec ? -1 : 0;
  }

  static int OnSocket(CURL*, curl_socket_t fd, int what, void* userp, void*) {
    auto* self = static_cast<Impl*>(userp);
    auto it = self->watches.find(fd);
    if (what == CURL_POLL_REMOVE) {
      if (it == self->watches.end()) return 0;
      it->second->want = 0;
      if (!it->second->owned) {
        // A descriptor curl opened itself (e.g. the resolver's socketpair): stop watching it
        // without closing it.
        it->second->closed = true;
        it->second->sd.release();
        self->watches.erase(it);
      }
      return 0;
    }
    std::shared_ptr<Watch> w;
    if (it == self->watches.end()) {
      w = std::make_shared<Watch>(self->io);
      boost::system::error_code ec;
      w->sd.assign(fd, ec);
      if (ec) return -1;
      self->watches[fd] = w;
    } else {
      w = it->second;
    }
    w->want = what;
    self->Arm(fd, w);
    return 0;
  }

  // curl keeps one timeout and moves it often. Re-arming the Asio timer each time costs a
  // timerfd syscall, so the timer is only re-armed when the deadline moves earlier; a wake-up
  // before a later deadline re-arms to it. "Now" (0) is a post, not a timer.
  static int OnTimer(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<Impl*>(userp);
    if (timeout_ms < 0) {
      // Nothing to time: drop the wake-up too, so an idle client leaves the io_context idle.
      self->curl_deadline.reset();
      if (self->timer_armed) {
        self->timer_armed = false;
        ++self->timer_generation;
        self->timer.cancel();
      }
    } else if (timeout_ms == 0) {
      self->curl_deadline.reset();
      self->PostRunNow();
    } else {
      const auto at = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
      self->curl_deadline = at;
      if (!self->timer_armed || at < self->timer_at) self->ArmTimer(at);
    }
    return 0;
  }

  void ArmTimer(std::chrono::steady_clock::time_point at) {
    timer_armed = true;
    timer_at = at;
    const uint64_t generation = ++timer_generation;
    timer.expires_at(at);
    auto on_timer = [this, generation, alive = alive.token()](const boost::system::error_code& ec) {
      if (ec || !alive || generation != timer_generation) return;
      timer_armed = false;
      if (!curl_deadline) return;
      if (std::chrono::steady_clock::now() < *curl_deadline) return ArmTimer(*curl_deadline);
      curl_deadline.reset();
      // Never called back into curl from its own callback: this runs from the io_context.
      Action(CURL_SOCKET_TIMEOUT, 0);
    };
    timer.async_wait(std::move(on_timer));
  }

  void PostRunNow() {
    if (run_now_posted) return;
    run_now_posted = true;
    asio::post(io, [this, alive = alive.token()] {
      if (!alive) return;
      run_now_posted = false;
      Action(CURL_SOCKET_TIMEOUT, 0);
    });
  }

  static size_t OnBody(char* data, size_t size, size_t n, void* userp) {
    auto* t = static_cast<Transfer*>(userp);
    t->response.body.append(data, size * n);
    return size * n;
  }

  // --- the loop ---

  // One direction of a socket: the wait, curl's words for it, and the Watch flag that says a wait
  // is pending.
  struct Direction {
    asio::posix::stream_descriptor::wait_type wait;
    int poll;    // CURL_POLL_IN | CURL_POLL_OUT: curl wants this direction
    int select;  // CURL_CSELECT_IN | CURL_CSELECT_OUT: it is ready
    bool Watch::*pending;
  };
  static constexpr Direction kRead{asio::posix::stream_descriptor::wait_read, CURL_POLL_IN,
                                   CURL_CSELECT_IN, &Watch::reading};
  static constexpr Direction kWrite{asio::posix::stream_descriptor::wait_write, CURL_POLL_OUT,
                                    CURL_CSELECT_OUT, &Watch::writing};

  void Arm(curl_socket_t fd, const std::shared_ptr<Watch>& w) {
    Arm(fd, w, kRead);
    Arm(fd, w, kWrite);
  }

  // Waits for `d` on the socket when curl wants it and no such wait is pending; a completed wait
  // tells curl and arms again.
  void Arm(curl_socket_t fd, const std::shared_ptr<Watch>& w, const Direction& d) {
    if (!(w->want & d.poll) || (*w).*d.pending) return;
    (*w).*d.pending = true;
    auto on_ready = [this, fd, w, d, alive = alive.token()](const boost::system::error_code& ec) {
      (*w).*d.pending = false;
      if (!alive || w->closed) return;
      if (ec && ec != asio::error::operation_aborted) {
        Action(fd, CURL_CSELECT_ERR);
      } else if (!ec && (w->want & d.poll)) {
        Action(fd, d.select);
      }
      if (!w->closed) Arm(fd, w);
    };
    w->sd.async_wait(d.wait, std::move(on_ready));
  }

  void Action(curl_socket_t fd, int events) {
    PAYOUTD_DCHECK_ON_THREAD(io_thread);
    int running = 0;
    curl_multi_socket_action(multi, fd, events, &running);
    CollectDone();
  }

  void CollectDone() {
    std::vector<std::unique_ptr<Transfer>> finished;
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* raw = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&raw));
      PAYOUTD_CHECK(raw != nullptr);
      auto it = transfers.find(raw->id);
      PAYOUTD_CHECK(it != transfers.end());
      std::unique_ptr<Transfer> t = std::move(it->second);
      transfers.erase(it);
      Finish(*t, msg->data.result);
      finished.push_back(std::move(t));
    }
    // Callbacks run after curl is done with this round; they may start or abort requests.
    for (auto& t : finished) {
      Callback done = std::move(t->done);
      HttpResponse response = std::move(t->response);
      t.reset();
      done(std::move(response));
    }
  }

  // Fills the response of a finished transfer and gives its easy handle back to the pool.
  void Finish(Transfer& t, CURLcode code) {
    HttpResponse& r = t.response;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t.started).count();
    if (code == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
      r.status = static_cast<int>(status);
      curl_header* h = nullptr;
      if (curl_easy_header(t.easy, "Retry-After", 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h)
        r.retry_after = h->value;
    } else {
      r.status = 0;
      r.timed_out = code == CURLE_OPERATION_TIMEDOUT;
      r.error = t.error[0] ? t.error : curl_easy_strerror(code);
      long request_size = 0;
      curl_easy_getinfo(t.easy, CURLINFO_REQUEST_SIZE, &request_size);
      curl_off_t pretransfer_us = 0;
      curl_easy_getinfo(t.easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
      // Not a byte of the request can have left when the connection never came up, or when the
      // transfer never got past connecting and sent nothing.
      r.maybe_sent = !(NeverConnected(code) || (request_size == 0 && pretransfer_us == 0));
      r.body.clear();
    }
    Release(t);
  }

  void Release(Transfer& t) {
    curl_multi_remove_handle(multi, t.easy);
    // The handle goes back to the pool: nothing may point into the finished transfer.
    curl_easy_setopt(t.easy, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(t.easy, CURLOPT_HTTPHEADER, nullptr);
    idle_easies.push_back(t.easy);
    t.easy = nullptr;
  }

  // A handle with the options every request shares. Pooled handles keep them (no
  // curl_easy_reset: it would free and rebuild curl's per-handle state each time).
  CURL* TakeEasy() {
    if (!idle_easies.empty()) {
      CURL* e = idle_easies.back();
      idle_easies.pop_back();
      return e;
    }
    CURL* e = curl_easy_init();
    if (!e) return nullptr;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::OnBody);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &Impl::OpenSocket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, this);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &Impl::CloseSocket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, this);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, options.verify_tls ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, options.verify_tls ? 2L : 0L);
    if (!options.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options.ca_file.c_str());
    return e;
  }
};

HttpClient::HttpClient(asio::io_context& io, HttpClientOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(options))) {
  GlobalInitOnce();
  Impl* i = impl_.get();
  i->multi = curl_multi_init();
  PAYOUTD_CHECK(i->multi != nullptr);
  curl_multi_setopt(i->multi, CURLMOPT_SOCKETFUNCTION, &Impl::OnSocket);
  curl_multi_setopt(i->multi, CURLMOPT_SOCKETDATA, i);
  curl_multi_setopt(i->multi, CURLMOPT_TIMERFUNCTION, &Impl::OnTimer);
  curl_multi_setopt(i->multi, CURLMOPT_TIMERDATA, i);
  curl_multi_setopt(i->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  curl_multi_setopt(i->multi, CURLMOPT_MAXCONNECTS, std::max(i->options.max_connections, 1L));
}

HttpClient::~HttpClient() {
  Impl* i = impl_.get();
  PAYOUTD_DCHECK_ON_THREAD(i->io_thread);
  for (auto& [id, t] : i->transfers) {
    curl_multi_remove_handle(i->multi, t->easy);
    curl_easy_cleanup(t->easy);
  }
  i->transfers.clear();
  for (CURL* e : i->idle_easies) curl_easy_cleanup(e);
  i->idle_easies.clear();
  // Closes cached connections through CloseSocket, which still finds its watches.
  curl_multi_cleanup(i->multi);
  for (auto& [fd, w] : i->watches) {
    w->closed = true;
    if (!w->owned) w->sd.release();
  }
  i->watches.clear();
  i->timer.cancel();
}

uint64_t HttpClient::Start(HttpRequest request, Callback done) {
  Impl* i = impl_.get();
  PAYOUTD_DCHECK_ON_THREAD(i->io_thread);
  auto t = std::make_unique<Transfer>();
  t->id = i->next_id++;
  t->done = std::move(done);
  t->request_body = std::move(request.body);
  t->started = std::chrono::steady_clock::now();
  t->easy = i->TakeEasy();
  PAYOUTD_CHECK(t->easy != nullptr);
  CURL* e = t->easy;

  // No "Expect: 100-continue" round trip for our small bodies.
  static char kNoExpect[] = "Expect:";
  t->header_text = std::move(request.headers);
  t->headers.resize(t->header_text.size() + 1);
  for (size_t k = 0; k < t->header_text.size(); ++k)
    t->headers[k] = {t->header_text[k].data(), &t->headers[k + 1]};
  t->headers.back() = {kNoExpect, nullptr};

  curl_easy_setopt(e, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers.data());
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(request.connect_timeout.count()));
  // Wait for a connection that can multiplex rather than opening another (matters for HTTP/2
  // over TLS only; plain HTTP/1.1 would be serialised by it).
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, request.url.rfind("https://", 0) == 0 ? 1L : 0L);
  // Every method option is set each time: the handle may last have carried another method.
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, nullptr);
  if (request.method == "POST") {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(t->request_body.size()));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->request_body.data());
  } else {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, nullptr);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(-1));
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);  // after POSTFIELDS, which would make it a POST
    if (request.method != "GET") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }

  const uint64_t id = t->id;
  Transfer* raw = t.get();
  i->transfers.emplace(id, std::move(t));
  // add_handle only arms the timer (posted); the transfer starts from the io_context.
  if (curl_multi_add_handle(i->multi, e) != CURLM_OK) {
    auto node = i->transfers.extract(id);
    raw->response.error = "curl_multi_add_handle failed";
    i->idle_easies.push_back(raw->easy);
    std::shared_ptr<Transfer> owned(std::move(node.mapped()));
    asio::post(i->io, [owned] { owned->done(std::move(owned->response)); });
  }
  return id;
}

void HttpClient::Abort(uint64_t handle) {
  Impl* i = impl_.get();
  PAYOUTD_DCHECK_ON_THREAD(i->io_thread);
  auto it = i->transfers.find(handle);
  if (it == i->transfers.end()) return;
  std::shared_ptr<Transfer> t(std::move(it->second));
  i->transfers.erase(it);
  i->Release(*t);
  t->response.cancelled = true;
  t->response.maybe_sent = true;
  t->response.error = "cancelled";
  asio::post(i->io, [t] { t->done(std::move(t->response)); });
}

void HttpClient::AbortAll() {
  PAYOUTD_DCHECK_ON_THREAD(impl_->io_thread);
  std::vector<uint64_t> ids;
  for (auto& [id, t] : impl_->transfers) ids.push_back(id);
  for (uint64_t id : ids) Abort(id);
}

size_t HttpClient::active() const {
  PAYOUTD_DCHECK_ON_THREAD(impl_->io_thread);
  return impl_->transfers.size();
}

void HttpClient::SetMaxConnections(long n) {
  PAYOUTD_DCHECK_ON_THREAD(impl_->io_thread);
  impl_->options.max_connections = std::max(n, 1L);
  curl_multi_setopt(impl_->multi, CURLMOPT_MAXCONNECTS, impl_->options.max_connections);
}

}  // namespace payoutd
