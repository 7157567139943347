// Splits a byte stream into protocol frames without copying: the session reads into the
// reader's buffer and gets views of whole frames back. No I/O, no SQL.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

namespace occ {

struct Frame {
  char type = 0;           // 0 for the untyped packets of the startup phase
  std::string_view body;   // the message after its header
  std::string_view raw;    // header and body, as received: what is forwarded unchanged
};

class FrameReader {
 public:
  enum class Status {
    frame,       // `out` holds a complete frame
    need_more,   // read more bytes, then call next() again
    chunk,       // `out.raw` holds the next bytes of a frame being streamed through
    bad_length,  // the length word cannot be valid
    too_long,    // the frame is longer than the limit
  };

  // Holds no buffer until the first write_area(); buffers of the default capacity come from, and
  // go back to, a pool per thread.
  static constexpr std::size_t kDefaultCapacity = 16 * 1024;
  explicit FrameReader(std::size_t max_body_length, std::size_t initial_capacity = kDefaultCapacity);
  ~FrameReader();
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // Free space to read into: at least `min` bytes, and room for the whole of an incomplete frame
  // at the head. Invalidates views of earlier frames: call it only once they are forwarded.
  std::span<char> write_area(std::size_t min = 4096);
  void commit(std::size_t n) { end_ += n; }

  // Startup-phase packets are untyped: set while the connection is in that phase.
  void set_untyped(bool untyped) { untyped_ = untyped; }
  void set_max_body_length(std::size_t n) { max_body_ = n; }

  Status next(Frame& out);

  // After need_more: the type and total body length of the incomplete frame at the head, so the
  // caller may choose to stream it instead of buffering it whole.
  bool head_incomplete(char& type, std::size_t& body_length) const;
  // Streams the incomplete head frame: returns its bytes so far (header included) to forward now;
  // later next() calls return its remaining bytes as Status::chunk until it is complete.
  std::string_view stream_head();

  // A frame is being streamed through: next() returns its pieces as Status::chunk.
  bool streaming() const { return stream_remaining_ > 0; }
  std::size_t buffered() const { return end_ - begin_; }
  // With nothing buffered, gives the buffer back to the pool: an idle connection holds none.
  void release_if_empty();
  std::size_t capacity() const { return buf_.size(); }

 private:
  std::size_t header_size() const { return untyped_ ? 4 : 5; }

  std::size_t initial_capacity_;
  std::vector<char> buf_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::size_t max_body_;
  std::size_t stream_remaining_ = 0;
  bool untyped_ = false;
};

}  // namespace occ
