// Rectangular linear sum assignment (minimum cost), shortest augmenting path, O(n^3).
//
// The solver grows the assignment one row at a time; for each new row it runs a Dijkstra-style
// search over the columns on reduced costs (dual variables u, v) until it reaches a free column,
// then augments along the path. Its visiting and tie-breaking order is chosen so that it returns
// the same assignment as scipy.optimize.linear_sum_assignment on the same float64 matrix, ties
// included:
//   * rows are added in order 0, 1, ...; a wide matrix (rows <= cols) is solved as is, a tall one
//     is solved transposed (then every column is assigned and rows may stay free);
//   * the columns still to be scanned are kept in a list that starts in descending order and loses
//     an element by moving the last one into its place;
//   * the next column to enter the search tree is the scanned one of lowest tentative distance;
//     on equal distance a free (unassigned) column wins over an assigned one, otherwise the one
//     met first in that list order;
//   * arithmetic is done in the same order (reached + cost - u[i] - v[j]), in float64.
#pragma once
#include <cstdint>
#include <vector>

namespace higherpose {

enum class AssignmentStatus { kOk = 0, kInvalidEntry = 1, kInfeasible = 2 };

class AssignmentSolver {
 public:
  // cost: rows x cols, row-major. On success col_for_row[r] is the column assigned to row r, or
  // -1 when rows > cols and row r stays unassigned. NaN or -inf entries give kInvalidEntry; a
  // matrix with no finite complete assignment gives kInfeasible.
  AssignmentStatus solve(int64_t rows, int64_t cols, const double* cost, int64_t* col_for_row);

 private:
  // Workspaces reused across calls (one solver per thread).
  std::vector<double> transposed_, u_, v_, dist_;
  std::vector<int64_t> col_of_row_, row_of_col_, pred_, pending_;
  std::vector<char> row_in_tree_, col_in_tree_;
};

}  // namespace higherpose
