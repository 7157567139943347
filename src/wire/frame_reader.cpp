// Framing of the PostgreSQL byte stream: length words, limits, partial frames.
#include "wire/frame_reader.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace occ {

namespace {

// Read buffers of one size, kept by the thread that last used them for the next connection with
// data to read, as PgBouncer's sbuf does: a session holds a buffer only while bytes are in it.
class BufferPool {
 public:
  std::vector<char> take(std::size_t size) {
    if (size != size_ || free_.empty()) return std::vector<char>(size);
    std::vector<char> buffer = std::move(free_.back());
    free_.pop_back();
    return buffer;
  }
  void give(std::vector<char>&& buffer) {
    if (buffer.size() == size_ && free_.size() < kMaxFree) free_.push_back(std::move(buffer));
    buffer = {};
  }

 private:
  static constexpr std::size_t size_ = FrameReader::kDefaultCapacity;
  static constexpr std::size_t kMaxFree = 64;  // 1 MiB per thread at most
  std::vector<std::vector<char>> free_;
};

thread_local BufferPool pool;

}  // namespace

FrameReader::FrameReader(std::size_t max_body_length, std::size_t initial_capacity)
    : initial_capacity_(initial_capacity), max_body_(max_body_length) {}

FrameReader::~FrameReader() { pool.give(std::move(buf_)); }

void FrameReader::release_if_empty() {
  if (begin_ != end_ || buf_.empty()) return;
  begin_ = end_ = 0;
  pool.give(std::move(buf_));
}

std::span<char> FrameReader::write_area(std::size_t min) {
  if (begin_ == end_) {
    begin_ = end_ = 0;  // stream_head() leaves an empty buffer with its offsets where they were
    // A large frame held whole is gone: its memory goes with it.
    if (buf_.size() > 4 * initial_capacity_) buf_ = {};
    if (buf_.empty()) buf_ = pool.take(initial_capacity_);
  }
  char type;
  std::size_t body;
  if (head_incomplete(type, body)) min = std::max(min, header_size() + body - (end_ - begin_));
  if (buf_.size() - end_ < min) {
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() - end_ < min) buf_.resize(std::max(buf_.size() * 2, end_ + min));
  }
  return {buf_.data() + end_, buf_.size() - end_};
}

static uint32_t read_length(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return ntohl(v);
}

FrameReader::Status FrameReader::next(Frame& out) {
  const std::size_t have = end_ - begin_;
  if (stream_remaining_ > 0) {
    if (have == 0) return Status::need_more;
    std::size_t n = std::min(have, stream_remaining_);
    out = Frame{0, {}, std::string_view(buf_.data() + begin_, n)};
    begin_ += n;
    stream_remaining_ -= n;
    if (begin_ == end_) begin_ = end_ = 0;
    return Status::chunk;
  }
  const std::size_t header = header_size();
  if (have < header) return Status::need_more;
  const char* p = buf_.data() + begin_;
  const char type = untyped_ ? 0 : p[0];
  const uint32_t length = read_length(untyped_ ? p : p + 1);
  // The length word counts itself; an untyped packet also carries at least a 4-byte code.
  if (length < (untyped_ ? 8u : 4u)) return Status::bad_length;
  const std::size_t body = length - 4;
  if (body > max_body_) return Status::too_long;
  const std::size_t total = header + body;
  if (have < total) return Status::need_more;
  out = Frame{type, std::string_view(p + header, body), std::string_view(p, total)};
  begin_ += total;
  if (begin_ == end_) begin_ = end_ = 0;  // an empty buffer restarts at the front: no memmove later
  return Status::frame;
}

bool FrameReader::head_incomplete(char& type, std::size_t& body_length) const {
  const std::size_t have = end_ - begin_;
  const std::size_t header = header_size();
  if (stream_remaining_ > 0 || have < header) return false;
  const char* p = buf_.data() + begin_;
  const uint32_t length = read_length(untyped_ ? p : p + 1);
  if (length < 4 || length - 4 > max_body_) return false;
  type = untyped_ ? 0 : p[0];
  body_length = length - 4;
  return have < header + body_length;
}

std::string_view FrameReader::stream_head() {
  const std::size_t have = end_ - begin_;
  const char* p = buf_.data() + begin_;
  const uint32_t length = read_length(untyped_ ? p : p + 1);
  stream_remaining_ = header_size() + (length - 4) - have;
  std::string_view bytes(p, have);
  begin_ = end_;
  return bytes;
}

}  // namespace occ
