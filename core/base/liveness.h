// Whether an object still exists, for work that may complete after it is gone: an Asio handler, a
// timer, a store-thread completion. The object owns a Liveness (declared as its last member, so it
// ends before the members a handler would touch); each handler captures a token and does nothing
// once the object is gone:
//
//   timer_.async_wait([this, alive = alive_.token()](const boost::system::error_code& ec) {
//     if (!alive || ec) return;  // destroyed (or cancelled) meanwhile
//     ...
//   });
//
// Threading: a token answers for the moment it is asked, so check it on the thread that destroys
// the owner (the io_context's); then the owner cannot end while the handler runs. Tokens may be
// copied and dropped on any thread.
#pragma once

#include <memory>

namespace payoutd {

class Liveness {
 public:
  class Token {
   public:
    // True while the Liveness it came from exists and has not ended.
    explicit operator bool() const { return !alive_.expired(); }

   private:
    friend class Liveness;
    explicit Token(std::weak_ptr<const void> alive) : alive_(std::move(alive)) {}
    std::weak_ptr<const void> alive_;
  };

  Liveness() : alive_(std::make_shared<char>(0)) {}
  Liveness(const Liveness&) = delete;
  Liveness& operator=(const Liveness&) = delete;

  Token token() const { return Token(alive_); }
  // Ends it before the owner's destructor is done: tokens turn false from here on.
  void End() { alive_.reset(); }

 private:
  std::shared_ptr<const void> alive_;
};

}  // namespace payoutd
