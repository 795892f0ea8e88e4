#include "client/cli/npy_header.h"

#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace primserve {
namespace cli {
namespace {

constexpr size_t kQuoteLimit = 160;  // Characters of the header quoted in an error message.

// A recursive-descent reader over the dict literal; every method leaves pos_ after what it read.
class HeaderReader {
 public:
  explicit HeaderReader(absl::string_view text) : text_(text) {}

  absl::StatusOr<NpyHeader> Read() {
    NpyHeader header;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    if (!Consume('{')) return Error("expected '{'");
    while (!Consume('}')) {
      std::string key;
      if (absl::Status status = ReadString(&key); !status.ok()) return status;
      if (!Consume(':')) return Error(absl::StrCat("expected ':' after '", key, "'"));
      absl::Status status;
      if (key == "descr" && !seen_descr) {
        seen_descr = true;
        if (Peek() == '[') return Error("unsupported dtype: structured arrays (a list descr)");
        status = ReadString(&header.descr);
      } else if (key == "fortran_order" && !seen_order) {
        seen_order = true;
        status = ReadBool(&header.fortran_order);
      } else if (key == "shape" && !seen_shape) {
        seen_shape = true;
        status = ReadShape(&header.shape);
      } else if (key == "descr" || key == "fortran_order" || key == "shape") {
        return Error(absl::StrCat("duplicate key '", key, "'"));
      } else {
        return Error(absl::StrCat("unexpected key '", key, "'"));
      }
      if (!status.ok()) return status;
      if (!Consume(',') && Peek() != '}') return Error("expected ',' or '}'");
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after '}'");
    if (!seen_descr) return Error("missing key 'descr'");
    if (!seen_order) return Error("missing key 'fortran_order'");
    if (!seen_shape) return Error("missing key 'shape'");
    return header;
  }

 private:
  absl::Status Error(absl::string_view problem) const {
    absl::string_view quoted = absl::StripTrailingAsciiWhitespace(text_);
    const bool cut = quoted.size() > kQuoteLimit;
    return absl::InvalidArgumentError(absl::StrCat("malformed header: ", problem, " at offset ", pos_,
                                                   " in \"", absl::CEscape(quoted.substr(0, kQuoteLimit)),
                                                   cut ? "...\"" : "\""));
  }

  void SkipSpace() {
    while (pos_ < text_.size() && absl::ascii_isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }

  // The next non-space character, or '\0' at the end.
  char Peek() {
    SkipSpace();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }

  bool Consume(char c) {
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }

  absl::Status ReadString(std::string* out) {
    const char quote = Peek();
    if (quote != '\'' && quote != '"') return Error("expected a quoted string");
    const size_t end = text_.find(quote, pos_ + 1);
    if (end == absl::string_view::npos) return Error("unterminated string");
    absl::string_view body = text_.substr(pos_ + 1, end - pos_ - 1);
    if (body.find('\\') != absl::string_view::npos) return Error("escapes in strings are not supported");
    out->assign(body.data(), body.size());
    pos_ = end + 1;
    return absl::OkStatus();
  }

  absl::Status ReadBool(bool* out) {
    SkipSpace();
    const absl::string_view rest = text_.substr(pos_);
    for (const auto& [word, value] : {std::pair<absl::string_view, bool>{"True", true}, {"False", false}}) {
      if (absl::StartsWith(rest, word)) {
        pos_ += word.size();
        *out = value;
        return absl::OkStatus();
      }
    }
    return Error("expected True or False");
  }

  // A tuple of integers: (), (n,), (a, b) ... An extent may carry Python 2's 'L' suffix.
  absl::Status ReadShape(std::vector<int64_t>* shape) {
    if (!Consume('(')) return Error("expected '(' to open the shape tuple");
    while (!Consume(')')) {
      SkipSpace();
      if (pos_ >= text_.size() || !absl::ascii_isdigit(static_cast<unsigned char>(text_[pos_]))) {
        return Error("expected a non-negative integer extent");
      }
      int64_t extent = 0;
      while (pos_ < text_.size() && absl::ascii_isdigit(static_cast<unsigned char>(text_[pos_]))) {
        const int digit = text_[pos_] - '0';
        if (extent > (std::numeric_limits<int64_t>::max() - digit) / 10) {
          return Error("shape extent overflows int64");
        }
        extent = extent * 10 + digit;
        ++pos_;
      }
      if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;
      shape->push_back(extent);
      if (!Consume(',') && Peek() != ')') return Error("expected ',' or ')' in the shape tuple");
    }
    return absl::OkStatus();
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view text) { return HeaderReader(text).Read(); }

}  // namespace cli
}  // namespace primserve
