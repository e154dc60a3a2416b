// A streaming RFC 4180 CSV reader. It pulls bytes from a std::istream in chunks (4 KiB, growing to
// 1 MiB), so memory stays bounded by the chunk and the longest record, never by the file.
//
// Accepted: quoted fields holding delimiters, doubled quotes ("") and line breaks; a UTF-8 BOM at
// the very start (dropped); CRLF, LF or lone CR line breaks, mixed; a missing final line break;
// any single-byte delimiter. Completely empty lines are skipped (they still count as lines).
//
// Errors are values, never crashes, and each names the physical line and the 1-based field: a quote
// inside an unquoted field, text after a closing quote, a quoted field never closed, invalid UTF-8,
// a record longer than max_record_bytes, and (when uniform_width) a record whose field count
// differs from the first record's. After an error the reader skips to the end of that physical line
// (or of the record, when the record's structure was intact) and carries on, so every bad row can
// be reported in one pass.
//
// Not thread-safe; one reader per stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

namespace payoutd {

struct CsvOptions {
  char delimiter = ',';               // must not be '"', '\r' or '\n' (a bug: aborts)
  size_t max_record_bytes = 1 << 20;  // a longer record is an error (bounds memory)
  bool uniform_width = true;          // every record must have the first record's field count
};

struct CsvError {
  uint32_t line = 0;    // physical line (1-based) where the problem is
  uint32_t field = 0;   // 1-based field number in its record; 0 = the record as a whole
  std::string message;  // for a finance user, e.g. "invalid UTF-8 (byte 0xFF)"
};

class CsvReader {
 public:
  enum class Next { kRecord, kError, kEnd };

  CsvReader(std::istream& in, CsvOptions options = {});
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  // Called with every raw byte of the input, in order, exactly once, as it is read (e.g. to hash
  // the file). Set it before the first Read().
  void OnBytes(std::function<void(std::string_view)> observer) { on_bytes_ = std::move(observer); }

  // Reads the next record. kRecord: fields() holds it. kError: error() says what is wrong; for a
  // ragged row fields() still holds the record. kEnd: no more input (also after a stream failure,
  // see stream_failed()).
  Next Read();

  // The last record's fields; views stay valid until the next Read().
  const std::vector<std::string_view>& fields() const { return fields_; }
  // Physical line (header = 1) where the last record returned by Read() starts.
  uint32_t record_line() const { return record_line_; }
  const CsvError& error() const { return error_; }
  // Field count of the first record (0 before it is read).
  size_t width() const { return width_; }
  uint64_t bytes_read() const { return bytes_read_; }
  // True when reading stopped because the stream reported an I/O error (badbit).
  bool stream_failed() const { return stream_failed_; }

 private:
  bool Fill();  // refills buf_; false at end of input
  // How a field read on the slow path ended; kError: Fail() has set error_.
  enum class FieldEnd { kDelimiter, kRecordEnd, kError };
  bool SkipEmptyLines();  // false at end of input
  void TakeLineBreak();   // consumes the line break at pos_ ('\r', '\n' or CRLF)
  FieldEnd ReadQuotedField(uint32_t field_no);
  FieldEnd ReadUnquotedField(uint32_t field_no);
  FieldEnd FailTooLong();
  bool AtEnd();
  Next Fail(uint32_t line, uint32_t field, std::string message, bool skip_line);
  void SkipRestOfLine();
  void FinishRecord();
  bool ValidateUtf8(CsvError* error) const;  // fills *error when the record is not UTF-8
  bool ReadSimpleLine();  // fast path: a quote-free line wholly in buf_; false = use the slow path
  Next Finish();          // width and UTF-8 checks of fields_

  std::istream& in_;
  CsvOptions opt_;
  std::function<void(std::string_view)> on_bytes_;
  std::vector<char> buf_;
  size_t pos_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  bool started_ = false;
  bool stream_failed_ = false;
  uint64_t bytes_read_ = 0;
  uint32_t line_ = 1;  // physical line at pos_
  uint32_t record_line_ = 0;
  size_t width_ = 0;
  std::string record_;  // slow path: unescaped field bytes of the current record, back to back
  std::vector<size_t> ends_;              // end offset of each field in record_
  std::vector<std::string_view> fields_;  // into record_, or into buf_ on the fast path
  CsvError error_;
  bool special_[256] = {};  // bytes that end a run of an unquoted field
};

}  // namespace payoutd
