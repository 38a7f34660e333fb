// Rectangular linear sum assignment: see hungarian.h for the tie-breaking contract.
#include "group/hungarian.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace higherpose {

AssignmentStatus AssignmentSolver::solve(int64_t rows, int64_t cols, const double* cost,
                                         int64_t* col_for_row) {
  for (int64_t r = 0; r < rows; ++r) col_for_row[r] = -1;
  if (rows == 0 || cols == 0) return AssignmentStatus::kOk;

  // Work on a wide matrix (nr <= nc): a tall one is transposed.
  const bool transpose = cols < rows;
  const double* c = cost;
  int64_t nr = rows, nc = cols;
  if (transpose) {
    transposed_.resize(rows * cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < cols; ++k) transposed_[k * rows + r] = cost[r * cols + k];
    c = transposed_.data();
    std::swap(nr, nc);
  }
  for (int64_t e = 0; e < nr * nc; ++e) {
    if (std::isnan(c[e]) || c[e] == -std::numeric_limits<double>::infinity())
      return AssignmentStatus::kInvalidEntry;
  }

  const double inf = std::numeric_limits<double>::infinity();
  u_.assign(nr, 0.0);
  v_.assign(nc, 0.0);
  dist_.assign(nc, inf);
  col_of_row_.assign(nr, -1);
  row_of_col_.assign(nc, -1);
  pred_.assign(nc, -1);
  pending_.resize(nc);
  row_in_tree_.assign(nr, 0);
  col_in_tree_.assign(nc, 0);

  for (int64_t start = 0; start < nr; ++start) {
    // Shortest path from row `start` to a free column over reduced costs.
    for (int64_t k = 0; k < nc; ++k) pending_[k] = nc - 1 - k;
    int64_t num_pending = nc;
    std::fill(row_in_tree_.begin(), row_in_tree_.end(), 0);
    std::fill(col_in_tree_.begin(), col_in_tree_.end(), 0);
    std::fill(dist_.begin(), dist_.end(), inf);
    double reached = 0.0;  // length of the path to the column that entered the tree last
    int64_t row = start, sink = -1;
    while (sink < 0) {
      row_in_tree_[row] = 1;
      double lowest = inf;
      int64_t lowest_pos = -1;
      const double* cost_row = c + row * nc;
      for (int64_t pos = 0; pos < num_pending; ++pos) {
        const int64_t col = pending_[pos];
        const double through_row = reached + cost_row[col] - u_[row] - v_[col];
        if (through_row < dist_[col]) {
          pred_[col] = row;
          dist_[col] = through_row;
        }
        if (dist_[col] < lowest || (dist_[col] == lowest && row_of_col_[col] < 0)) {
          lowest = dist_[col];
          lowest_pos = pos;
        }
      }
      if (lowest == inf || lowest_pos < 0) return AssignmentStatus::kInfeasible;
      reached = lowest;
      const int64_t col = pending_[lowest_pos];
      col_in_tree_[col] = 1;
      pending_[lowest_pos] = pending_[--num_pending];
      if (row_of_col_[col] < 0) {
        sink = col;
      } else {
        row = row_of_col_[col];
      }
    }

    // Dual update keeps reduced costs non-negative and tight on the tree.
    u_[start] += reached;
    for (int64_t r = 0; r < nr; ++r) {
      if (row_in_tree_[r] && r != start) u_[r] += reached - dist_[col_of_row_[r]];
    }
    for (int64_t k = 0; k < nc; ++k) {
      if (col_in_tree_[k]) v_[k] -= reached - dist_[k];
    }
    // Flip the path: every row on it takes the column it was reached through.
    int64_t col = sink;
    while (true) {
      const int64_t r = pred_[col];
      row_of_col_[col] = r;
      std::swap(col_of_row_[r], col);
      if (r == start) break;
    }
  }

  if (transpose) {
    // Rows of the solved matrix are the caller's columns.
    for (int64_t k = 0; k < nr; ++k) col_for_row[col_of_row_[k]] = k;
  } else {
    for (int64_t r = 0; r < nr; ++r) col_for_row[r] = col_of_row_[r];
  }
  return AssignmentStatus::kOk;
}

}  // namespace higherpose
