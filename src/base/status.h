// Errors as values: Status carries a code and a message; Result<T> is a value or a Status.
// Nothing here throws. Both are [[nodiscard]] types, so every function that returns one by value
// is a nodiscard call: an error cannot be dropped by accident; `(void)` says it was on purpose.
//
// The code says what the caller can do about the error; it is mapped to an HTTP status at the
// admin API (api/http_status.h) and to a SQLSTATE at the Postgres edge (pg/sqlstate.h), each in
// one place. The message is for people: it names what was wrong, without a code prefix.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace drawbridge::base {

// Only the codes the code base produces; add one when a caller needs to tell it apart.
enum class StatusCode {
  kOk = 0,
  // The caller's input is wrong (a name, a number out of range, a fly.toml, a certificate):
  // sending it again unchanged fails again.
  kInvalidArgument,
  // What the caller named (an app, a machine, a certificate, a file) does not exist.
  kNotFound,
  // The request conflicts with the current state: a name already taken, a pool with no free
  // address, a concurrent writer that won. It may succeed after a change or a retry.
  kConflict,
  // Something needed is not reachable now (a machine, a peer); a later retry may work.
  kUnavailable,
  // A fault of this process or its environment (storage, files, OpenSSL): not the caller's.
  kInternal,
};

// "INVALID_ARGUMENT", "NOT_FOUND", ...: for logs and tests, never parsed.
constexpr std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kConflict:
      return "CONFLICT";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kInternal:
      return "INTERNAL";
  }
  return "UNKNOWN";
}

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status InvalidArgument(std::string message) {
    return Status(StatusCode::kInvalidArgument, std::move(message));
  }
  static Status NotFound(std::string message) {
    return Status(StatusCode::kNotFound, std::move(message));
  }
  static Status Conflict(std::string message) {
    return Status(StatusCode::kConflict, std::move(message));
  }
  static Status Unavailable(std::string message) {
    return Status(StatusCode::kUnavailable, std::move(message));
  }
  static Status Internal(std::string message) {
    return Status(StatusCode::kInternal, std::move(message));
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // The same code with `prefix` before the message: "certificate for x refused: " + message.
  Status WithPrefix(std::string_view prefix) const {
    return Status(code_, std::string(prefix) + message_);
  }

  bool operator==(const Status&) const = default;

 private:
  // A failure always has a failing code; an OK code here would read as success.
  Status(StatusCode code, std::string message)
      : code_(code == StatusCode::kOk ? StatusCode::kInternal : code),
        message_(std::move(message)) {}

  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  // An OK status carries no value: it becomes kInternal, so ok() and value() never disagree.
  Result(Status status)  // NOLINT: implicit by design
      : v_(status.ok() ? Status::Internal("a result without a value") : std::move(status)) {}

  bool ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  // The error; an OK Status when there is a value.
  const Status& status() const { return ok() ? kOkStatus : std::get<1>(v_); }
  StatusCode code() const { return status().code(); }
  const std::string& message() const { return status().message(); }

 private:
  static inline const Status kOkStatus{};
  std::variant<T, Status> v_;
};

}  // namespace drawbridge::base
