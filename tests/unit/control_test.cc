// The control socket: one JSON line each way, the caller known by its peer credentials, and bad
// clients (malformed, too large, silent) answered or dropped without harming the server.
#include "daemon/control.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <filesystem>
#include <future>
#include <thread>

namespace payoutd {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("control_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    path_ = (dir_ / "run" / "control.sock").string();
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, &ready] {
      auto server = ControlServer::Create(
          io_, path_,
          [this](const ControlRequest& r, const ControlPeer& p, ControlServer::Reply reply) {
            last_request_ = r;
            last_peer_ = p;
            if (r.command == "slow") {  // answered later, as a cancel is once it is durable
              auto timer = std::make_shared<boost::asio::steady_timer>(io_, milliseconds(200));
              timer->async_wait([timer, reply](const boost::system::error_code&) {
                reply({0, "done later"});
              });
              return;
            }
            reply({r.command == "hold" ? 0 : 2, "did " + r.command + " " + r.batch});
          },
          milliseconds(200));
      create_status_ = server.ok() ? Status::Ok() : server.status();
      if (server.ok()) server_ = std::move(*server);
      ready.set_value();
      io_.run();
    });
    started.wait();
    ASSERT_TRUE(create_status_.ok()) << create_status_.message();
  }
  void TearDown() override {
    boost::asio::post(io_, [this] {
      server_.reset();
      guard_.reset();
    });
    thread_.join();
    fs::remove_all(dir_);
  }

  // A raw client: sends `bytes`, returns what comes back until the server closes.
  std::string Raw(const std::string& bytes) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path_.c_str());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
      out.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return out;
  }

  fs::path dir_;
  std::string path_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_ =
      boost::asio::make_work_guard(io_);
  std::unique_ptr<ControlServer> server_;
  Status create_status_;
  ControlRequest last_request_;
  ControlPeer last_peer_;
  std::thread thread_;
};

TEST_F(ControlTest, ARequestGetsTheHandlersReplyAndTheCallerIsKnownByItsCredentials) {
  auto reply = SendControl(path_, ControlRequest{"hold", "payroll-1", false, "wrong \"file\"\n"});
  ASSERT_TRUE(reply.ok()) << reply.error();
  ASSERT_TRUE(reply->has_value());
  EXPECT_EQ((*reply)->exit_code, 0);
  EXPECT_EQ((*reply)->message, "did hold payroll-1");
  EXPECT_EQ(last_request_.reason, "wrong \"file\"\n") << "the reason arrives byte for byte";
  EXPECT_EQ(last_peer_.uid, ::getuid());
  EXPECT_EQ(last_peer_.pid, ::getpid());
  EXPECT_EQ(last_peer_.Describe(), ControlPeer::Self().Describe());
}

TEST_F(ControlTest, TheSocketIsReadableAndWritableByOwnerAndGroupOnly) {
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(ControlTest, TheClientWaitsForALateReply) {
  auto reply = SendControl(path_, ControlRequest{"slow", "b", false, ""});
  ASSERT_TRUE(reply.ok() && reply->has_value()) << (reply.ok() ? "" : reply.error());
  EXPECT_EQ((*reply)->message, "done later");
}

TEST_F(ControlTest, NoDaemonListeningIsNotAnError) {
  auto reply = SendControl((dir_ / "nobody.sock").string(), ControlRequest{"hold", "b", false, ""});
  ASSERT_TRUE(reply.ok()) << reply.error();
  EXPECT_FALSE(reply->has_value());
}

TEST_F(ControlTest, MalformedTooLargeAndSilentClientsAreAnsweredOrDroppedAndTheServerGoesOn) {
  EXPECT_NE(Raw("this is not json\n").find("malformed request"), std::string::npos);
  EXPECT_NE(Raw("{\"batch\":\"b\"}\n").find("'command' is missing"), std::string::npos);
  EXPECT_NE(Raw(std::string(1 << 20, 'x')).find("too large"), std::string::npos);
  EXPECT_EQ(Raw(""), "") << "a client that sends nothing is closed after the read deadline";
  auto reply = SendControl(path_, ControlRequest{"hold", "after", false, ""});
  ASSERT_TRUE(reply.ok() && reply->has_value());
  EXPECT_EQ((*reply)->message, "did hold after");
}

TEST(ControlCodec, RequestsAndRepliesSurviveTheirEncoding) {
  ControlRequest r{"cancel", "b-1", true, "line\nbreak \\ and \"quotes\""};
  auto back = DecodeControlRequest(EncodeControlRequest(r));
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(back->command, r.command);
  EXPECT_EQ(back->batch, r.batch);
  EXPECT_EQ(back->all, true);
  EXPECT_EQ(back->reason, r.reason);
  auto reply = DecodeControlReply(EncodeControlReply({1, "no \"state\""}));
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->exit_code, 1);
  EXPECT_EQ(reply->message, "no \"state\"");
  EXPECT_FALSE(DecodeControlRequest("{\"command\":3}").ok());
  EXPECT_FALSE(DecodeControlRequest("{\"command\":\"hold\",\"all\":\"yes\"}").ok());
}

}  // namespace
}  // namespace payoutd
