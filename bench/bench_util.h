// Shared pieces of the Google Benchmark suites: a reporter that, after the normal console
// table, prints each benchmark's throughput (its "rate" counter, e.g. FLOP/s, else bytes/s; in
// units of 1e9 per second) as a ratio to the baseline measured in the same run.
//
// With --benchmark_repetitions=N the ratio uses the medians. Benchmarks name their baseline
// with a label: a run labelled "baseline:<key>" is the baseline
// for every run labelled "vs:<key>". A label may carry several such words separated by spaces
// (e.g. "vs:matmul baseline:fused_L2048", or two "vs:" keys, one ratio row each); other words
// are free text. A baseline measured more than once (the matmul peak is timed at the start
// and at the end of a suite, since a shared machine drifts) counts with its highest rate: the
// machine's practical peak in this run, never a low reading that would flatter every ratio.
//
// Paired benchmarks (label "paired:<subject>/<baseline>") time the subject and its baseline
// back to back, each half of a pair lasting about as long ("subject_calls", "baseline_calls"),
// and report the median of the per-pair ratios themselves (counter "paired_ratio", with
// "ratio_min", "ratio_max" and "pairs"); they get a table of their own.
#ifndef PRIMSERVE_BENCH_BENCH_UTIL_H_
#define PRIMSERVE_BENCH_BENCH_UTIL_H_

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace primserve {
namespace bench {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      // Single runs, or the median of repeated runs (--benchmark_repetitions=N).
      const bool single = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      if (run.error_occurred || !(single || median)) continue;
      if (run.counters.count("paired_ratio") != 0) {
        paired_.push_back(run);
        continue;
      }
      // A benchmark's figure of merit: its "rate" counter (e.g. FLOP/s) or bytes per second.
      auto it = run.counters.find("rate");
      if (it == run.counters.end()) it = run.counters.find("bytes_per_second");
      if (it == run.counters.end()) continue;
      const double rate = it->second.value;
      const std::string& label = run.report_label;
      // Keys are the words of the label that start with "baseline:" or "vs:".
      for (size_t begin = 0; begin < label.size();) {
        size_t end = label.find(' ', begin);
        if (end == std::string::npos) end = label.size();
        const std::string word = label.substr(begin, end - begin);
        begin = end + 1;
        if (word.rfind("baseline:", 0) == 0) {
          double& best = baselines_[word.substr(9)];
          best = std::max(best, rate);
        }
        if (word.rfind("vs:", 0) == 0) measured_.emplace_back(run.run_name.str(), std::make_pair(word.substr(3), rate));
      }
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\n%-60s %10s %10s %8s\n", "benchmark", "G/s", "base G/s", "ratio");
    for (const auto& [name, key_rate] : measured_) {
      const auto& [key, rate] = key_rate;
      auto base = baselines_.find(key);
      if (base == baselines_.end()) continue;
      std::printf("%-60s %10.2f %10.2f %8.2fx  (baseline %s)\n", name.c_str(), rate / 1e9, base->second / 1e9,
                  rate / base->second, key.c_str());
    }
    if (!paired_.empty()) {
      std::printf("\n%-72s %10s %10s %8s %15s %7s  %s\n", "paired benchmark", "G/s", "base G/s", "ratio", "range (pairs)",
                  "calls", "subject/baseline");
    }
    for (const Run& run : paired_) {
      auto counter = [&](const char* name) {
        auto it = run.counters.find(name);
        return it == run.counters.end() ? 0.0 : it->second.value;
      };
      const std::string& label = run.report_label;
      const std::string what = label.rfind("paired:", 0) == 0 ? label.substr(7) : label;
      std::printf("%-72s %10.2f %10.2f %7.2fx %6.2f-%.2f (%.0f) %3.0f:%-3.0f  %s\n", run.run_name.str().c_str(),
                  counter("rate") / 1e9, counter("baseline_rate") / 1e9, counter("paired_ratio"), counter("ratio_min"),
                  counter("ratio_max"), counter("pairs"), counter("subject_calls"), counter("baseline_calls"), what.c_str());
    }
    std::fflush(stdout);
  }

 private:
  std::map<std::string, double> baselines_;
  std::vector<std::pair<std::string, std::pair<std::string, double>>> measured_;
  std::vector<Run> paired_;
};

}  // namespace bench
}  // namespace primserve

#define PRIMSERVE_BENCHMARK_MAIN()                                 \
  int main(int argc, char** argv) {                                \
    benchmark::Initialize(&argc, argv);                            \
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1; \
    primserve::bench::RatioReporter reporter;                      \
    benchmark::RunSpecifiedBenchmarks(&reporter);                  \
    benchmark::Shutdown();                                         \
    return 0;                                                      \
  }

#endif  // PRIMSERVE_BENCH_BENCH_UTIL_H_
