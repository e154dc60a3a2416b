#include "core/gateway/jwt.h"
#include "core/base/json_text.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstdio>

#include <simdjson.h>

namespace payoutd {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::string_view kHeaderJson = R"({"alg":"HS256","typ":"JWT"})";

int DecodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  // An empty key is legal for HMAC; OpenSSL wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const void* key_ptr = key.empty() ? &kEmpty : static_cast<const void*>(key.data());
  unsigned char* ok =
      HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(), &len);
  PAYOUTD_CHECK(ok != nullptr && len == 32);
  return std::string(reinterpret_cast<const char*>(mac.data()), len);
}

std::string ClaimsJson(const JwtClaims& c) {
  std::string out = R"({"operations":[)";
  for (size_t i = 0; i < c.operations.size(); ++i) {
    if (i) out.push_back(',');
    AppendJsonString(out, c.operations[i]);
  }
  out +=
      R"(],"iat":)" + std::to_string(c.iat) + R"(,"exp":)" + std::to_string(c.exp) + R"(,"jti":)";
  AppendJsonString(out, c.jti);
  out += R"(,"sub":)";
  AppendJsonString(out, c.sub);
  out.push_back('}');
  return out;
}

Status CheckHeader(std::string_view json) {
  thread_local simdjson::dom::parser parser;  // reused: a parser allocates on first use
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size()).get(doc))
    return Status::InvalidArgument("token header is not JSON");
  simdjson::dom::object obj;
  if (doc.get_object().get(obj)) return Status::InvalidArgument("token header is not an object");
  std::string_view alg;
  if (obj["alg"].get_string().get(alg) || alg != "HS256")
    return Status::InvalidArgument("token alg is not HS256");
  simdjson::dom::element typ;
  if (!obj["typ"].get(typ)) {
    std::string_view t;
    if (typ.get_string().get(t) || t != "JWT")
      return Status::InvalidArgument("token typ is not JWT");
  }
  return Status::Ok();
}

Result<JwtClaims> ParseClaims(std::string_view json) {
  thread_local simdjson::dom::parser parser;  // reused: a parser allocates on first use
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size()).get(doc))
    return Status::InvalidArgument("token claims are not JSON");
  simdjson::dom::object obj;
  if (doc.get_object().get(obj)) return Status::InvalidArgument("token claims are not an object");
  JwtClaims c;
  simdjson::dom::array ops;
  if (obj["operations"].get_array().get(ops))
    return Status::InvalidArgument("token has no operations array");
  for (simdjson::dom::element op : ops) {
    std::string_view s;
    if (op.get_string().get(s)) return Status::InvalidArgument("token operation is not a string");
    c.operations.emplace_back(s);
  }
  if (obj["iat"].get_int64().get(c.iat))
    return Status::InvalidArgument("token iat is missing or not an integer");
  if (obj["exp"].get_int64().get(c.exp))
    return Status::InvalidArgument("token exp is missing or not an integer");
  std::string_view s;
  if (obj["jti"].get_string().get(s))
    return Status::InvalidArgument("token jti is missing or not a string");
  c.jti = std::string(s);
  if (obj["sub"].get_string().get(s))
    return Status::InvalidArgument("token sub is missing or not a string");
  c.sub = std::string(s);
  return c;
}

}  // namespace

std::string Base64UrlEncode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  size_t i = 0;
  auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest == 1) {
    uint32_t v = b(i) << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (rest == 2) {
    uint32_t v = (b(i) << 16) | (b(i + 1) << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

Result<std::string> Base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1)
    return Status::InvalidArgument("base64url text has an impossible length");
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = DecodeChar(c);
    if (v < 0)
      return Status::InvalidArgument("base64url text has a character outside the alphabet");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits must be zero, so that each byte string has exactly one encoding.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return Status::InvalidArgument("base64url text has non-zero trailing bits");
  }
  return out;
}

std::string NewUuidV4(Random& random) {
  uint64_t hi = random.Next64();
  uint64_t lo = random.Next64();
  hi = (hi & ~0xF000ULL) | 0x4000ULL;              // version 4
  lo = (lo & ~(0xC0ULL << 56)) | (0x80ULL << 56);  // variant 10xx
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
  return buf;
}

JwtClaims NewJwtClaims(std::vector<std::string> operations, std::string sub, int64_t now_unix,
                       int64_t ttl_seconds, Random& random) {
  JwtClaims c;
  c.operations = std::move(operations);
  c.iat = now_unix;
  c.exp = now_unix + ttl_seconds;
  c.jti = NewUuidV4(random);
  c.sub = std::move(sub);
  return c;
}

std::string SignJwt(const JwtClaims& claims, std::string_view secret) {
  PAYOUTD_CHECK(!claims.jti.empty());
  std::string signing_input = Base64UrlEncode(kHeaderJson);
  signing_input.push_back('.');
  signing_input += Base64UrlEncode(ClaimsJson(claims));
  std::string sig = Base64UrlEncode(HmacSha256(secret, signing_input));
  signing_input.push_back('.');
  signing_input += sig;
  return signing_input;
}

Result<JwtClaims> VerifyJwt(std::string_view token, std::string_view secret, int64_t now_unix) {
  size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return Status::InvalidArgument("token is not three parts");
  size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Status::InvalidArgument("token is not three parts");
  }
  std::string_view header_b64 = token.substr(0, dot1);
  std::string_view claims_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string_view sig_b64 = token.substr(dot2 + 1);

  Result<std::string> header = Base64UrlDecode(header_b64);
  if (!header) return Status::InvalidArgument("token header is not base64url");
  if (Status s = CheckHeader(*header); !s) return s;

  Result<std::string> sig = Base64UrlDecode(sig_b64);
  if (!sig) return Status::InvalidArgument("token signature is not base64url");
  std::string expected = HmacSha256(secret, token.substr(0, dot2));
  if (sig->size() != expected.size() ||
      CRYPTO_memcmp(sig->data(), expected.data(), expected.size()) != 0) {
    return Status::InvalidArgument("token signature does not match");
  }

  Result<std::string> claims_json = Base64UrlDecode(claims_b64);
  if (!claims_json) return Status::InvalidArgument("token claims are not base64url");
  Result<JwtClaims> claims = ParseClaims(*claims_json);
  if (!claims) return claims;
  if (now_unix >= claims->exp) return Status::InvalidArgument("token expired");
  return claims;
}

bool JwtAllows(const JwtClaims& claims, std::string_view operation) {
  for (const std::string& op : claims.operations) {
    if (op == operation) return true;
  }
  return false;
}

}  // namespace payoutd
