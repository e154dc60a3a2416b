#include "core/batch/csv_reader.h"

#include <cstring>
#include <string>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/base/status.h"

namespace payoutd {
namespace {

// Reads start small (cheap for small inputs) and grow to 1 MiB chunks for big files.
constexpr size_t kFirstChunkBytes = 4 << 10;
constexpr size_t kChunkBytes = 1 << 20;

// Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not valid (overlong forms,
// surrogates and code points beyond U+10FFFF are invalid, as RFC 3629 says).
size_t Utf8SequenceLength(const unsigned char* s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < n && s[i] >= lo && s[i] <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

bool AllAscii(const char* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w & 0x8080808080808080ULL) return false;
  }
  for (; i < n; ++i)
    if (static_cast<unsigned char>(p[i]) & 0x80) return false;
  return true;
}

// Physical line breaks inside `s` (CRLF, LF or a lone CR each count once).
uint32_t CountLineBreaks(std::string_view s) {
  uint32_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n')
      ++n;
    else if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n'))
      ++n;
  }
  return n;
}

char Hex(unsigned v) {
  return "0123456789ABCDEF"[v & 0xF];
}

}  // namespace

CsvReader::CsvReader(std::istream& in, CsvOptions options)
    : in_(in), opt_(options), buf_(kFirstChunkBytes) {
  PAYOUTD_CHECK(opt_.delimiter != '"' && opt_.delimiter != '\r' && opt_.delimiter != '\n');
  for (char c : {opt_.delimiter, '"', '\r', '\n'}) special_[static_cast<unsigned char>(c)] = true;
}

bool CsvReader::Fill() {
  if (eof_) return false;
  if (end_ == buf_.size() && buf_.size() < kChunkBytes) buf_.resize(buf_.size() * 2);
  in_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
  size_t n = static_cast<size_t>(in_.gcount());
  if (in_.bad()) stream_failed_ = true;
  if (n == 0) {
    eof_ = true;
    return false;
  }
  if (on_bytes_) on_bytes_(std::string_view(buf_.data(), n));
  bytes_read_ += n;
  pos_ = 0;
  end_ = n;
  if (!started_) {
    started_ = true;
    // istream::read fills the whole chunk unless the input ends, so a BOM is never split.
    if (n >= 3 && std::memcmp(buf_.data(), "\xEF\xBB\xBF", 3) == 0) pos_ = 3;
  }
  if (!in_) eof_ = true;  // short read: nothing more will come
  return pos_ < end_ || Fill();
}

bool CsvReader::AtEnd() {
  return pos_ == end_ && !Fill();
}

void CsvReader::SkipRestOfLine() {
  while (!AtEnd()) {
    char c = buf_[pos_++];
    if (c == '\n') {
      ++line_;
      return;
    }
    if (c == '\r') {
      if (!AtEnd() && buf_[pos_] == '\n') ++pos_;
      ++line_;
      return;
    }
  }
}

CsvReader::Next CsvReader::Fail(uint32_t line, uint32_t field, std::string message,
                                bool skip_line) {
  error_.line = line;
  error_.field = field;
  error_.message = std::move(message);
  if (skip_line) {
    SkipRestOfLine();
    fields_.clear();
  }
  return Next::kError;
}

bool CsvReader::ValidateUtf8(CsvError* error) const {
  if (fields_.empty()) return true;
  // The fields lie in order in one buffer (record_, or buf_ on the fast path), so the text from the
  // first field's start to a bad byte tells how many line breaks precede it.
  const char* first = fields_.front().data();
  const char* last = fields_.back().data() + fields_.back().size();
  if (AllAscii(first, static_cast<size_t>(last - first))) return true;
  for (size_t k = 0; k < fields_.size(); ++k) {
    const auto* s = reinterpret_cast<const unsigned char*>(fields_[k].data());
    const size_t n = fields_[k].size();
    for (size_t i = 0; i < n;) {
      size_t len = Utf8SequenceLength(s + i, n - i);
      if (len == 0) {
        error->line =
            record_line_ + CountLineBreaks(std::string_view(first, fields_[k].data() + i - first));
        error->field = static_cast<uint32_t>(k + 1);
        error->message = std::string("invalid UTF-8 (byte 0x") + Hex(s[i] >> 4) + Hex(s[i]) +
                         "); save the file as UTF-8";
        return false;
      }
      i += len;
    }
  }
  return true;
}

bool CsvReader::ReadSimpleLine() {
  const char* const start = buf_.data() + pos_;
  const char* const e = buf_.data() + end_;
  const char* field = start;
  const char* p = start;
  for (;;) {
    // Find the next delimiter, quote, CR or LF: 16 bytes at a time where SSE2 is available.
#ifdef __SSE2__
    const __m128i delim = _mm_set1_epi8(opt_.delimiter), quote = _mm_set1_epi8('"'),
                  cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    while (e - p >= 16) {
      __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, delim), _mm_cmpeq_epi8(v, quote)),
                                 _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
      unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(hit));
      if (mask != 0) {
        p += __builtin_ctz(mask);
        break;
      }
      p += 16;
    }
#endif
    while (p < e && !special_[static_cast<unsigned char>(*p)]) ++p;
    if (p == e || static_cast<size_t>(p - start) > opt_.max_record_bytes)
      break;  // leave it to the slow path
    const char c = *p;
    if (c == opt_.delimiter) {
      fields_.emplace_back(field, static_cast<size_t>(p - field));
      field = ++p;
      continue;
    }
    const char* next;
    if (c == '\n') {
      next = p + 1;
    } else if (c == '\r' && p + 1 < e && p[1] == '\n') {
      next = p + 2;
    } else {
      break;  // a quote, or a CR not known to be part of CRLF
    }
    fields_.emplace_back(field, static_cast<size_t>(p - field));
    pos_ = static_cast<size_t>(next - buf_.data());
    ++line_;
    return true;
  }
  fields_.clear();
  return false;
}

CsvReader::Next CsvReader::Finish() {
  if (width_ == 0) {
    width_ = fields_.size();
  } else if (opt_.uniform_width && fields_.size() != width_) {
    return Fail(record_line_, 0,
                "row has " + std::to_string(fields_.size()) + " fields but the header has " +
                    std::to_string(width_) +
                    "; check for a missing or extra delimiter, or a value with a delimiter that is "
                    "not quoted",
                false);
  }
  if (!ValidateUtf8(&error_)) return Next::kError;
  return Next::kRecord;
}

bool CsvReader::SkipEmptyLines() {
  for (;;) {
    if (AtEnd()) return false;
    char c = buf_[pos_];
    if (c == '\n') {
      ++pos_;
      ++line_;
    } else if (c == '\r') {
      ++pos_;
      if (!AtEnd() && buf_[pos_] == '\n') ++pos_;
      ++line_;
    } else {
      return true;
    }
  }
}

void CsvReader::TakeLineBreak() {
  if (buf_[pos_++] == '\r' && !AtEnd() && buf_[pos_] == '\n') ++pos_;
  ++line_;
}

CsvReader::FieldEnd CsvReader::FailTooLong() {
  Fail(record_line_, 0,
       "row is longer than " + std::to_string(opt_.max_record_bytes) +
           " bytes; is a quote missing its closing quote?",
       true);
  return FieldEnd::kError;
}

// At the opening quote. Line breaks inside the quotes belong to the field.
CsvReader::FieldEnd CsvReader::ReadQuotedField(uint32_t field_no) {
  ++pos_;
  const uint32_t open_line = line_;
  for (;;) {
    if (AtEnd()) {
      Fail(open_line, field_no, "a quoted field is never closed (its closing \" is missing)",
           false);
      return FieldEnd::kError;
    }
    const char* p = buf_.data() + pos_;
    const char* e = buf_.data() + end_;
    const char* q = p;
    while (q < e && *q != '"' && *q != '\r' && *q != '\n') ++q;
    record_.append(p, q);
    pos_ = static_cast<size_t>(q - buf_.data());
    if (record_.size() > opt_.max_record_bytes) return FailTooLong();
    if (q == e) continue;
    char c = *q;
    ++pos_;
    if (c == '"') {
      if (!AtEnd() && buf_[pos_] == '"') {  // "" is one literal quote
        record_.push_back('"');
        ++pos_;
        continue;
      }
      break;  // closing quote
    }
    record_.push_back(c);
    if (c == '\r' && !AtEnd() && buf_[pos_] == '\n') {
      record_.push_back('\n');
      ++pos_;
    }
    ++line_;
  }
  ends_.push_back(record_.size());
  if (AtEnd()) return FieldEnd::kRecordEnd;
  char c = buf_[pos_];
  if (c == opt_.delimiter) {
    ++pos_;
    return FieldEnd::kDelimiter;
  }
  if (c == '\r' || c == '\n') {
    TakeLineBreak();
    return FieldEnd::kRecordEnd;
  }
  Fail(line_, field_no,
       "unexpected text after the closing quote of a quoted field; a quote inside a quoted "
       "field must be doubled (\"\")",
       true);
  return FieldEnd::kError;
}

// Copies runs of ordinary bytes in bulk; on the slow path this loop is where the time goes.
CsvReader::FieldEnd CsvReader::ReadUnquotedField(uint32_t field_no) {
  for (;;) {
    if (AtEnd()) {
      ends_.push_back(record_.size());
      return FieldEnd::kRecordEnd;
    }
    const char* p = buf_.data() + pos_;
    const char* e = buf_.data() + end_;
    const char* q = p;
    while (q < e && !special_[static_cast<unsigned char>(*q)]) ++q;
    record_.append(p, q);
    pos_ = static_cast<size_t>(q - buf_.data());
    if (record_.size() > opt_.max_record_bytes) return FailTooLong();
    if (q == e) continue;
    char c = *q;
    if (c == opt_.delimiter) {
      ++pos_;
      ends_.push_back(record_.size());
      return FieldEnd::kDelimiter;
    }
    if (c == '\r' || c == '\n') {
      ends_.push_back(record_.size());
      TakeLineBreak();
      return FieldEnd::kRecordEnd;
    }
    Fail(line_, field_no,
         "a quote (\") inside a field that does not start with a quote; put the whole field "
         "in quotes and double the inner quote (\"\")",
         true);
    return FieldEnd::kError;
  }
}

CsvReader::Next CsvReader::Read() {
  record_.clear();
  ends_.clear();
  fields_.clear();

  // Empty lines between records carry nothing; skip them (they still count as lines).
  if (!SkipEmptyLines()) return Next::kEnd;
  record_line_ = line_;
  // Most lines have no quote and lie whole in the buffer: split them in place.
  if (ReadSimpleLine()) return Finish();

  // The slow path: quotes, or a record that straddles the end of the buffer. Fields are unescaped
  // into record_, back to back, and ends_ marks where each one ends.
  for (;;) {
    const uint32_t field_no = static_cast<uint32_t>(ends_.size() + 1);
    const bool quoted = !AtEnd() && buf_[pos_] == '"';
    const FieldEnd end = quoted ? ReadQuotedField(field_no) : ReadUnquotedField(field_no);
    if (end == FieldEnd::kError) return Next::kError;
    if (end == FieldEnd::kRecordEnd) break;
  }

  size_t begin = 0;
  fields_.reserve(ends_.size());
  for (size_t end : ends_) {
    fields_.emplace_back(record_.data() + begin, end - begin);
    begin = end;
  }
  return Finish();
}

}  // namespace payoutd
