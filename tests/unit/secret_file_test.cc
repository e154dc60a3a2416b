// The secret-file rule (core/base/secret_file.h). Reading the file under that rule is covered, with
// the messages operators see, by config_test's LoadConfig tests; here the parts on their own.
#include "core/base/secret_file.h"

#include <cstdlib>
#include <optional>
#include <string>

#include <gtest/gtest.h>

namespace payoutd {
namespace {

// Sets or clears $CREDENTIALS_DIRECTORY for one test and restores it after.
class ScopedCredentialsDirectory {
 public:
  explicit ScopedCredentialsDirectory(const char* value) {
    if (const char* old = std::getenv("CREDENTIALS_DIRECTORY")) old_ = old;
    if (value != nullptr) {
      ::setenv("CREDENTIALS_DIRECTORY", value, 1);
    } else {
      ::unsetenv("CREDENTIALS_DIRECTORY");
    }
  }
  ~ScopedCredentialsDirectory() {
    if (old_) {
      ::setenv("CREDENTIALS_DIRECTORY", old_->c_str(), 1);
    } else {
      ::unsetenv("CREDENTIALS_DIRECTORY");
    }
  }

 private:
  std::optional<std::string> old_;
};

TEST(ExpandCredentialsDirectory, ReplacesEitherSpellingOfTheVariable) {
  ScopedCredentialsDirectory env("/run/credentials/payoutd.service");
  EXPECT_EQ(ExpandCredentialsDirectory("$CREDENTIALS_DIRECTORY/payoutd-secret"),
            "/run/credentials/payoutd.service/payoutd-secret");
  EXPECT_EQ(ExpandCredentialsDirectory("${CREDENTIALS_DIRECTORY}/payoutd-secret"),
            "/run/credentials/payoutd.service/payoutd-secret");
}

TEST(ExpandCredentialsDirectory, LeavesOtherFilesAsTheyAre) {
  ScopedCredentialsDirectory env("/run/credentials/payoutd.service");
  EXPECT_EQ(ExpandCredentialsDirectory("/etc/payoutd/secret.key"), "/etc/payoutd/secret.key");
  EXPECT_EQ(ExpandCredentialsDirectory("secret.key"), "secret.key");
  EXPECT_EQ(ExpandCredentialsDirectory("x/$CREDENTIALS_DIRECTORY/s"), "x/$CREDENTIALS_DIRECTORY/s");
}

TEST(ExpandCredentialsDirectory, IsNulloptWhenTheVariableIsNotSet) {
  ScopedCredentialsDirectory unset(nullptr);
  EXPECT_EQ(ExpandCredentialsDirectory("$CREDENTIALS_DIRECTORY/payoutd-secret"), std::nullopt);
  ScopedCredentialsDirectory empty("");
  EXPECT_EQ(ExpandCredentialsDirectory("${CREDENTIALS_DIRECTORY}/payoutd-secret"), std::nullopt);
}

TEST(ExpandCredentialsDirectory, WithADefaultTakesTheVariableWhenSetAndTheDefaultOtherwise) {
  const std::string file = "${CREDENTIALS_DIRECTORY:-/etc/payoutd}/secret.key";
  {
    ScopedCredentialsDirectory env("/run/credentials/payoutd.service");
    EXPECT_EQ(ExpandCredentialsDirectory(file), "/run/credentials/payoutd.service/secret.key");
  }
  ScopedCredentialsDirectory unset(nullptr);
  EXPECT_EQ(ExpandCredentialsDirectory(file), "/etc/payoutd/secret.key");
  EXPECT_EQ(ExpandCredentialsDirectory("${CREDENTIALS_DIRECTORY:-.}/secret.key"), "secret.key")
      << "relative: the caller takes it from the configuration's folder";
  ScopedCredentialsDirectory empty("");
  EXPECT_EQ(ExpandCredentialsDirectory(file), "/etc/payoutd/secret.key") << "empty is unset";
}

TEST(ReadSecretFile, MissingFileIsUnavailableAndNamed) {
  Result<std::string> r = ReadSecretFile("/nonexistent/payoutd-secret");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.code(), StatusCode::kUnavailable);
  EXPECT_NE(r.error().find("/nonexistent/payoutd-secret"), std::string::npos) << r.error();
}

}  // namespace
}  // namespace payoutd
