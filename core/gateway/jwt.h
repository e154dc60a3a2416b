// JWT (HS256) as the gateway expects it (docs/gateway.md#the-token): header
// {"alg":"HS256","typ":"JWT"}, claims `operations`, `iat`, `exp`, `jti`, `sub`, signed with
// HMAC-SHA256 over the merchant's secret and encoded base64url without padding. Used by the gateway
// client to sign and by the sandbox gateway to verify.
//
// Every function is pure (time and randomness are passed in) and thread-safe.
// Never log a token or a secret.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/clock.h"
#include "core/base/status.h"

namespace payoutd {

struct JwtClaims {
  std::vector<std::string> operations;  // e.g. {"POST /payouts/TST-1", "GET /payouts/TST-1"}
  int64_t iat = 0;                      // issued at, Unix seconds
  int64_t exp = 0;                      // expires at, Unix seconds
  std::string jti;                      // a fresh UUID v4 per token
  std::string sub;                      // merchant code
  bool operator==(const JwtClaims&) const = default;
};

// RFC 4648 §5 alphabet, no padding.
std::string Base64UrlEncode(std::string_view bytes);
// Accepts unpadded text only (no '=', no whitespace, no standard-alphabet '+' '/'); an error for
// anything else, including a length that no encoding produces (len % 4 == 1) or non-zero
// trailing bits.
Result<std::string> Base64UrlDecode(std::string_view text);

// A random (version 4, variant 1) UUID in lower-case 8-4-4-4-12 form.
std::string NewUuidV4(Random& random);

// Claims for one token: iat = now_unix, exp = now_unix + ttl_seconds, a fresh jti.
JwtClaims NewJwtClaims(std::vector<std::string> operations, std::string sub, int64_t now_unix,
                       int64_t ttl_seconds, Random& random);

// header.payload.signature. Claims are written in the order operations, iat, exp, jti, sub.
// Requires a non-empty claims.jti (use NewJwtClaims or NewUuidV4).
std::string SignJwt(const JwtClaims& claims, std::string_view secret);

// Checks, in order: three base64url parts, header alg HS256 (typ JWT if present), the HMAC-SHA256
// signature (constant-time compare), claims shape (operations an array of strings, iat/exp
// integers, jti/sub strings), and now_unix < exp. The error says which check failed (never echoes
// the token or secret).
Result<JwtClaims> VerifyJwt(std::string_view token, std::string_view secret, int64_t now_unix);

// True when claims.operations names `operation` exactly, e.g. "GET /payouts/TST-1".
bool JwtAllows(const JwtClaims& claims, std::string_view operation);

}  // namespace payoutd
