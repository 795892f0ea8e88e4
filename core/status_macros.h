// RETURN_IF_ERROR / ASSIGN_OR_RETURN: early-return helpers for absl::Status and absl::StatusOr.
//
// Example:
//   RETURN_IF_ERROR(ValidateShape(shape));
//   ASSIGN_OR_RETURN(int64_t count, ElementCount(shape, "input.shape"));
#ifndef PRIMSERVE_CORE_STATUS_MACROS_H_
#define PRIMSERVE_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PRIMSERVE_CONCAT_INNER_(a, b) a##b
#define PRIMSERVE_CONCAT_(a, b) PRIMSERVE_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                                   \
  do {                                                          \
    ::absl::Status primserve_status_ = (expr);                  \
    if (!primserve_status_.ok()) return primserve_status_;      \
  } while (false)

#define ASSIGN_OR_RETURN(lhs, expr) \
  PRIMSERVE_ASSIGN_OR_RETURN_IMPL_(PRIMSERVE_CONCAT_(primserve_statusor_, __LINE__), lhs, expr)

#define PRIMSERVE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = *std::move(statusor)

#endif  // PRIMSERVE_CORE_STATUS_MACROS_H_
