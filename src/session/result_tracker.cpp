// Tracked results: layouts, the client's view of rows, streaming scans, noting rows read.
#include "session/result_tracker.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>

#include "sql/helper_contract.h"
#include "sql/json_text.h"

namespace occ {

bool text_format(const std::vector<int16_t>& formats, std::size_t column) {
  return pg::format_code(formats, column) == 0;
}

namespace {

// How many of the last columns carry the names rewrite.cpp gives the columns it appends to a SELECT.
unsigned named_added_columns(const pg::RowDescription& description) {
  unsigned n = 0;
  for (auto it = description.fields.rbegin(); it != description.fields.rend(); ++it, ++n)
    if (it->name != helpers::kKeyColumn && it->name != helpers::kVersionColumn) break;
  return n;
}

}  // namespace

ResultLayout describe_layout(const pg::RowDescription& description, const ResultTracking& tracking,
                             const RelationIndex& relations) {
  ResultLayout layout;
  layout.described = true;
  layout.added = tracking.added_columns;
  if (tracking.by_name) {
    const unsigned named = named_added_columns(description);
    if (tracking.tables.empty()) {
      // A cursor or prepared statement the session does not know (any longer): cut, note nothing.
      layout.added = named;
      layout.client_columns = static_cast<unsigned>(description.fields.size()) - named;
      return layout;
    }
    if (named != (tracking.in_place ? 0u : tracking.added_columns)) {
      layout.foreign = true;
      layout.added = 0;
      layout.client_columns = static_cast<unsigned>(description.fields.size());
      return layout;
    }
  }
  if (description.fields.size() < layout.added)
    throw pg::MalformedMessage("a tracked result has fewer columns than the proxy added");
  layout.known = true;
  layout.client_columns = static_cast<unsigned>(description.fields.size() - layout.added);
  for (unsigned t = 0; t < tracking.tables.size(); ++t) {
    const TablePolicy& table = *tracking.tables[t];
    if (tracking.in_place) layout.key_at.assign(table.key.size(), -1);
    const auto* identity = relations.table(table.qualified_name());
    if (!identity) continue;
    for (unsigned i = 0; i < layout.client_columns; ++i) {
      const auto& field = description.fields[i];
      const std::string* column =
          field.format == 0 ? identity->column(static_cast<uint32_t>(field.table_oid), field.column) : nullptr;
      if (column == nullptr) continue;
      layout.base.push_back({i, t, *column});
      if (!tracking.in_place) continue;
      const std::string& name = *column;
      if (name == table.version_column && layout.version_at < 0) layout.version_at = static_cast<int>(i);
      for (std::size_t k = 0; k < table.key.size(); ++k)
        if (name == table.key[k] && layout.key_at[k] < 0) layout.key_at[k] = static_cast<int>(i);
    }
  }
  return layout;
}

void client_row_description(std::string& out, pg::RowDescription description, const ResultLayout& layout) {
  description.fields.resize(layout.client_columns);
  pg::encode_row_description(out, description);
}

void client_data_row(std::string& out, const pg::DataRow& row, std::string_view body, unsigned added) {
  if (row.values.size() < added) throw pg::MalformedMessage("a tracked row has fewer columns than the proxy added");
  const std::size_t keep = row.values.size() - added;
  std::size_t cut = 2;
  for (std::size_t i = 0; i < keep; ++i) cut += 4 + (row.values[i] ? row.values[i]->size() : 0);
  pg::MessageWriter w(out);
  w.begin(pg::be::kDataRow);
  w.i16(static_cast<int16_t>(keep));
  w.bytes(body.substr(2, cut - 2));
  w.finish();
}

RowPassage large_row_passage(const ResultTracking* tracking, const ResultLayout& layout) {
  if (tracking == nullptr || !tracking->tracked() || layout.foreign) return RowPassage::stream;
  if (tracking->in_place) return RowPassage::scan;
  if (tracking->drop_result) return RowPassage::drop;
  return added_columns(*tracking, layout) > 0 ? RowPassage::whole : RowPassage::stream;
}

RowScanner RowScanner::for_layout(const ResultLayout& layout) {
  std::vector<std::size_t> caps(layout.client_columns, 0);
  auto want = [&](int at, std::size_t cap) {
    if (at >= 0 && static_cast<std::size_t>(at) < caps.size()) caps[at] = std::max(caps[at], cap);
  };
  for (const auto& column : layout.base) want(static_cast<int>(column.index), kMaxBaseValue + 1);
  for (int at : layout.key_at) want(at, kMaxKeyValue);
  want(layout.version_at, kMaxKeyValue);
  return RowScanner(std::move(caps));
}

void RowScanner::feed(std::string_view bytes) {
  auto fill_word = [&](std::size_t size) {
    const std::size_t n = std::min(size - word_have_, bytes.size());
    std::memcpy(word_ + word_have_, bytes.data(), n);
    word_have_ += n;
    bytes.remove_prefix(n);
    return word_have_ == size;
  };
  while (!bytes.empty()) {
    switch (phase_) {
      case Phase::count: {
        if (!fill_word(2)) return;
        uint16_t n;
        std::memcpy(&n, word_, 2);
        columns_ = ntohs(n);
        word_have_ = 0;
        values_.assign(columns_, std::nullopt);
        truncated_.assign(columns_, false);
        phase_ = columns_ == 0 ? Phase::done : Phase::length;
        break;
      }
      case Phase::length: {
        if (!fill_word(4)) return;
        uint32_t raw;
        std::memcpy(&raw, word_, 4);
        const auto length = static_cast<int32_t>(ntohl(raw));
        word_have_ = 0;
        if (length < -1) throw pg::MalformedMessage("negative column length");
        if (length == -1) {
          phase_ = ++column_ == columns_ ? Phase::done : Phase::length;
          break;
        }
        value_left_ = static_cast<std::size_t>(length);
        const std::size_t cap = column_ < caps_.size() ? caps_[column_] : 0;
        if (cap > 0) {
          values_[column_].emplace();
          truncated_[column_] = value_left_ > cap;
        }
        if (value_left_ == 0) {
          phase_ = ++column_ == columns_ ? Phase::done : Phase::length;
          break;
        }
        phase_ = Phase::value;
        break;
      }
      case Phase::value: {
        const std::size_t n = std::min(value_left_, bytes.size());
        if (auto& kept = values_[column_]) {
          const std::size_t cap = caps_[column_];
          if (kept->size() < cap) kept->append(bytes.data(), std::min(n, cap - kept->size()));
        }
        bytes.remove_prefix(n);
        value_left_ -= n;
        if (value_left_ == 0) phase_ = ++column_ == columns_ ? Phase::done : Phase::length;
        break;
      }
      case Phase::done:
        throw pg::MalformedMessage("a DataRow longer than its columns");
    }
  }
}

pg::DataRow RowScanner::row() const {
  pg::DataRow row;
  row.values.reserve(values_.size());
  for (const auto& value : values_)
    row.values.emplace_back(value ? std::optional<std::string_view>(*value) : std::nullopt);
  return row;
}

void NamedResults::declare(const std::string& name, const ResultTracking& tracking, uint64_t generation) {
  if (!tracking.tracked()) {
    names_.erase(name);
    return;
  }
  if (names_.size() >= kMaxNames && !names_.contains(name)) names_.erase(names_.begin());
  Entry& entry = names_[name];
  entry.tracking = tracking;
  entry.tracking.by_name = true;
  entry.generation = generation;
}

ResultTracking NamedResults::rows_of(const std::string& name, uint64_t generation) const {
  auto it = names_.find(name);
  if (it != names_.end() && it->second.generation == generation) return it->second.tracking;
  ResultTracking unknown;
  unknown.by_name = true;
  return unknown;
}

void NamedResults::forget(const std::string& name) {
  if (name.empty())
    names_.clear();
  else
    names_.erase(name);
}

void note_row(ReadSet& reads, const pg::DataRow& row, const ResultTracking& tracking, const ResultLayout& layout,
              const std::vector<int16_t>* result_formats) {
  const auto now = ReadSet::Clock::now();
  if (layout.foreign) return;
  if (tracking.in_place &&
      (layout.version_at < 0 || std::find(layout.key_at.begin(), layout.key_at.end(), -1) != layout.key_at.end()))
    return;
  // Appended columns follow the client's, each table's key columns then its version column.
  const unsigned added = added_columns(tracking, layout);
  if (row.values.size() < added) throw pg::MalformedMessage("a tracked row has fewer columns than the proxy added");
  std::size_t appended = row.values.size() - added;
  auto next = [&](int in_place_at) -> const std::optional<std::string_view>& {
    const std::size_t at = tracking.in_place ? static_cast<std::size_t>(in_place_at) : appended++;
    if (at >= row.values.size()) throw pg::MalformedMessage("a tracked row has fewer columns than its description");
    return row.values[at];
  };
  for (unsigned t = 0; t < tracking.tables.size(); ++t) {
    const TablePolicy& table = *tracking.tables[t];
    std::vector<std::string> key;
    bool complete = true;
    for (std::size_t k = 0; k < table.key.size(); ++k) {
      const auto& value = next(tracking.in_place ? layout.key_at[k] : 0);
      if (value)
        key.emplace_back(*value);
      else
        complete = false;
    }
    const auto& version = next(layout.version_at);
    // An outer join's missing side comes back as NULLs: nothing was read from this table.
    if (!complete) continue;
    if (tracking.rows_deleted) {
      reads.forget(table, key);
      continue;
    }
    if (!version) continue;
    ReadSet::Row remembered{std::string(*version), {}, now};
    if (layout.known) {
      std::string& base = remembered.base;
      base = "{";
      for (const auto& column : layout.base) {
        // Redacted values never leave the proxy: the map literal can end up in the server's log.
        if (column.table != t || column.index >= row.values.size() || table.is_redacted(column.name)) continue;
        // The diff shows values as text; a binary one would have to be decoded by type.
        if (result_formats != nullptr && !text_format(*result_formats, column.index)) continue;
        const auto& value = row.values[column.index];
        if (value && value->size() > kMaxBaseValue) continue;
        if (base.size() > 1) base += ',';
        append_json_string(base, column.name);
        base += ':';
        if (value)
          append_json_string(base, *value);
        else
          base += "null";
      }
      base += '}';
    }
    reads.note(table, key, std::move(remembered));
  }
}

}  // namespace occ
