// What one read batch forwards: a view of the input while nothing changes (no copy), an owned
// buffer from the first message the proxy replaces or drops.
#pragma once

#include <string>
#include <string_view>

namespace occ {

class Outbox {
 public:
  // Forward bytes unchanged (a view into the reader's buffer, valid until the batch is written).
  void forward(std::string_view raw) {
    if (owned_) {
      buffer_.append(raw);
    } else if (span_.empty()) {
      span_ = raw;
    } else if (span_.data() + span_.size() == raw.data()) {
      span_ = std::string_view(span_.data(), span_.size() + raw.size());
    } else {
      own();
      buffer_.append(raw);
    }
  }
  // Where replacement bytes go; everything forwarded so far keeps its place before them.
  std::string& edit() {
    own();
    return buffer_;
  }
  // Call when a message is dropped: later views must not be merged across the gap.
  void drop() { own(); }

  std::string_view pending() const { return owned_ ? std::string_view(buffer_) : span_; }
  bool empty() const { return pending().empty(); }
  void clear() {
    span_ = {};
    buffer_.clear();
    owned_ = false;
  }
  // Between batches of an idle connection: the owned buffer's memory goes too.
  void release() {
    clear();
    std::string().swap(buffer_);
  }

 private:
  void own() {
    if (!owned_) {
      buffer_.assign(span_);
      owned_ = true;
    }
  }

  std::string_view span_;
  std::string buffer_;  // keeps its capacity across batches until release()
  bool owned_ = false;
};

}  // namespace occ
