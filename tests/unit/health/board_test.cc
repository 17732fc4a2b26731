#include "health/board.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "health/log_capture.h"

namespace drawbridge::health {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using testing::LogCapture;

const Clock::time_point T0 = Clock::time_point{} + std::chrono::hours(1);
const std::chrono::system_clock::time_point kWall =
    std::chrono::system_clock::time_point{} + std::chrono::seconds(1795428000);  // 2026-11-23T10:00:00Z

MachineKey Key(std::string address = "10.0.0.1", int port = 5432, std::string app = "db") {
  return MachineKey{std::move(app), std::move(address), port};
}

control::TcpCheck Check(int interval_ms = 1000, int grace_ms = 500) {
  control::TcpCheck c;
  c.interval = milliseconds(interval_ms);
  c.timeout = milliseconds(200);
  c.grace_period = milliseconds(grace_ms);
  return c;
}

MachineView ViewOf(const Board& board, const MachineKey& key, Clock::time_point now) {
  std::vector<std::string> addresses = {key.address};
  return board.View(key.app, key.port, addresses, now).at(0);
}

int Count(const std::vector<LogCapture::Line>& lines, spdlog::level::level_enum level,
          const std::string& needle) {
  int n = 0;
  for (const auto& l : lines) {
    if (l.level == level && l.text.find(needle) != std::string::npos) ++n;
  }
  return n;
}

TEST(Board, UnknownMachinesAreHealthyAndIdle) {
  Board board;
  std::vector<std::string> addresses = {"10.0.0.1", "10.0.0.2"};
  auto views = board.View("db", 5432, addresses, T0);
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views[0].address, "10.0.0.1");
  EXPECT_EQ(views[1].address, "10.0.0.2");
  for (const auto& v : views) {
    EXPECT_TRUE(v.healthy);
    EXPECT_FALSE(v.last_resort);
    EXPECT_EQ(v.role, Role::kUnknown);
    EXPECT_EQ(v.sessions, 0);
  }
  EXPECT_TRUE(board.AppStatus("db").empty());
}

TEST(Board, FailedCheckMakesUnhealthyAndPassedCheckHealthyAgain) {
  LogCapture logs;
  Board board;
  board.SetTargets({{Key(), {Check()}}}, T0);
  EXPECT_TRUE(ViewOf(board, Key(), T0).healthy);
  board.CheckResult(Key(), 0, false, "connection refused", T0 + milliseconds(600), kWall);
  MachineView v = ViewOf(board, Key(), T0 + milliseconds(600));
  EXPECT_FALSE(v.healthy);
  EXPECT_FALSE(v.last_resort);  // an active failure is not a last resort
  // Still failing: no new log line.
  board.CheckResult(Key(), 0, false, "connection refused", T0 + milliseconds(1600), kWall);
  EXPECT_FALSE(ViewOf(board, Key(), T0 + std::chrono::hours(1)).last_resort);
  board.CheckResult(Key(), 0, true, "", T0 + milliseconds(2600), kWall);
  EXPECT_TRUE(ViewOf(board, Key(), T0 + milliseconds(2600)).healthy);

  auto lines = logs.Lines();
  EXPECT_EQ(Count(lines, spdlog::level::warn,
                  "app db: machine 10.0.0.1 port 5432 unhealthy: connection refused"),
            1);
  EXPECT_EQ(Count(lines, spdlog::level::info, "app db: machine 10.0.0.1 port 5432 healthy again"),
            1);
  EXPECT_EQ(lines.size(), 2u);
}

TEST(Board, FailuresWithinTheGracePeriodDoNotCount) {
  Board board;
  board.SetTargets({{Key(), {Check(1000, 500)}}}, T0);
  board.CheckResult(Key(), 0, false, "connection refused", T0, kWall);
  board.CheckResult(Key(), 0, false, "connection refused", T0 + milliseconds(499), kWall);
  EXPECT_TRUE(ViewOf(board, Key(), T0 + milliseconds(499)).healthy);
  EXPECT_EQ(board.AppStatus("db").at(0).last_check, "");
  board.CheckResult(Key(), 0, false, "connection refused", T0 + milliseconds(500), kWall);
  EXPECT_FALSE(ViewOf(board, Key(), T0 + milliseconds(500)).healthy);
  // The grace runs from when the machine was first listed, not from each SetTargets.
  board.SetTargets({{Key(), {Check(1000, 500)}}}, T0 + milliseconds(5000));
  board.CheckResult(Key(), 0, true, "", T0 + milliseconds(5000), kWall);
  board.CheckResult(Key(), 0, false, "timed out", T0 + milliseconds(5100), kWall);
  EXPECT_FALSE(ViewOf(board, Key(), T0 + milliseconds(5100)).healthy);
}

TEST(Board, HealthyOnlyWhenEveryCheckPasses) {
  Board board;
  board.SetTargets({{Key(), {Check(1000, 0), Check(3000, 0)}}}, T0);
  board.CheckResult(Key(), 0, true, "", T0, kWall);
  board.CheckResult(Key(), 1, false, "timed out after 200ms", T0, kWall);
  EXPECT_FALSE(ViewOf(board, Key(), T0).healthy);
  board.CheckResult(Key(), 0, true, "", T0 + milliseconds(1000), kWall);
  EXPECT_FALSE(ViewOf(board, Key(), T0).healthy);
  EXPECT_EQ(board.AppStatus("db").at(0).last_check, "failing: timed out after 200ms");
  board.CheckResult(Key(), 1, true, "", T0 + milliseconds(3000), kWall);
  EXPECT_TRUE(ViewOf(board, Key(), T0).healthy);
  EXPECT_EQ(board.AppStatus("db").at(0).last_check, "passing");
}

TEST(Board, ResultsForUnlistedMachinesOrChecksAreIgnored) {
  Board board;
  board.CheckResult(Key(), 0, false, "x", T0, kWall);
  EXPECT_TRUE(ViewOf(board, Key(), T0).healthy);
  EXPECT_TRUE(board.AppStatus("db").empty());
  board.SetTargets({{Key(), {Check(1000, 0)}}}, T0);
  board.CheckResult(Key(), 1, false, "x", T0, kWall);
  EXPECT_TRUE(ViewOf(board, Key(), T0).healthy);
}

TEST(Board, AChangedCheckKeepsItsLastResult) {
  Board board;
  board.SetTargets({{Key(), {Check(1000, 0)}}}, T0);
  board.CheckResult(Key(), 0, false, "connection refused", T0, kWall);
  EXPECT_FALSE(ViewOf(board, Key(), T0).healthy);
  // Another interval: the machine's last result stands until the new check reports.
  board.SetTargets({{Key(), {Check(2000, 0)}}}, T0 + milliseconds(20));
  EXPECT_FALSE(ViewOf(board, Key(), T0).healthy);
  // Fewer checks: the results of those removed no longer count.
  board.SetTargets({{Key(), {Check(1000, 0), Check(5000, 0)}}}, T0 + milliseconds(30));
  board.CheckResult(Key(), 0, true, "", T0 + milliseconds(40), kWall);
  board.CheckResult(Key(), 1, false, "connection refused", T0 + milliseconds(40), kWall);
  EXPECT_FALSE(ViewOf(board, Key(), T0).healthy);
  board.SetTargets({{Key(), {Check(1000, 0)}}}, T0 + milliseconds(50));
  EXPECT_TRUE(ViewOf(board, Key(), T0).healthy);
}

TEST(Board, PassiveFailureBacksOffThenIsALastResort) {
  LogCapture logs;
  Board board;
  board.SetTargets({{Key(), {Check()}}}, T0);
  board.ConnectFailed(Key(), T0);
  MachineView v = ViewOf(board, Key(), T0 + milliseconds(999));
  EXPECT_FALSE(v.healthy);
  EXPECT_FALSE(v.last_resort);
  v = ViewOf(board, Key(), T0 + milliseconds(1000));
  EXPECT_FALSE(v.healthy);
  EXPECT_TRUE(v.last_resort);
  // A failure of an attempt that started within the backoff does not lengthen it.
  board.ConnectFailed(Key(), T0 + milliseconds(500));
  EXPECT_TRUE(ViewOf(board, Key(), T0 + milliseconds(1000)).last_resort);
  // A failed last-resort retry doubles it: 2 s, 4 s, ... 30 s at most.
  Clock::time_point t = T0 + milliseconds(1000);
  milliseconds expected(2000);
  for (int i = 0; i < 8; ++i) {
    board.ConnectFailed(Key(), t);
    EXPECT_FALSE(ViewOf(board, Key(), t + expected - milliseconds(1)).last_resort) << i;
    EXPECT_TRUE(ViewOf(board, Key(), t + expected).last_resort) << i;
    t += expected;
    expected = std::min(expected * 2, milliseconds(30000));
  }
  EXPECT_EQ(expected, milliseconds(30000));
  EXPECT_EQ(board.AppStatus("db").at(0).connect_failures, 10u);
  // A successful connect ends it and resets the backoff.
  board.ConnectSucceeded(Key());
  EXPECT_TRUE(ViewOf(board, Key(), t).healthy);
  board.ConnectFailed(Key(), t);
  EXPECT_TRUE(ViewOf(board, Key(), t + milliseconds(1000)).last_resort);

  auto lines = logs.Lines();
  EXPECT_EQ(Count(lines, spdlog::level::warn, "app db: machine 10.0.0.1 port 5432 unhealthy: "),
            2);
  EXPECT_EQ(Count(lines, spdlog::level::info, "healthy again"), 1);
}

TEST(Board, PassingCheckEndsAPassiveMark) {
  Board board;
  board.SetTargets({{Key(), {Check(1000, 0)}}}, T0);
  board.ConnectFailed(Key(), T0);
  board.ConnectFailed(Key(), T0 + milliseconds(1000));  // backoff now 2 s
  board.CheckResult(Key(), 0, true, "", T0 + milliseconds(1100), kWall);
  EXPECT_TRUE(ViewOf(board, Key(), T0 + milliseconds(1100)).healthy);
  // ...and resets the backoff to 1 s.
  board.ConnectFailed(Key(), T0 + milliseconds(2000));
  EXPECT_TRUE(ViewOf(board, Key(), T0 + milliseconds(3000)).last_resort);
}

TEST(Board, SuccessfulConnectDoesNotClearAFailingCheck) {
  Board board;
  board.SetTargets({{Key(), {Check(1000, 0)}}}, T0);
  board.CheckResult(Key(), 0, false, "connection refused", T0, kWall);
  board.ConnectSucceeded(Key());
  EXPECT_FALSE(ViewOf(board, Key(), T0).healthy);
  // Both an active and a passive failure: not a last resort until a check passes.
  board.ConnectFailed(Key(), T0);
  EXPECT_FALSE(ViewOf(board, Key(), T0 + std::chrono::hours(1)).last_resort);
}

TEST(Board, PassiveFailureOnAMachineNotYetListed) {
  Board board;
  board.ConnectFailed(Key(), T0);
  EXPECT_FALSE(ViewOf(board, Key(), T0).healthy);
  // Listing it keeps what was learned.
  board.SetTargets({{Key(), {Check()}}}, T0);
  EXPECT_FALSE(ViewOf(board, Key(), T0).healthy);
}

TEST(Board, SessionsCountedUntilTheTicketEnds) {
  Board board;
  board.SetTargets({{Key(), {Check()}}}, T0);
  {
    SessionTicket a = board.OpenSession(Key());
    SessionTicket b = board.OpenSession(Key());
    EXPECT_TRUE(a.counting());
    EXPECT_EQ(ViewOf(board, Key(), T0).sessions, 2);
    SessionTicket c = std::move(a);
    EXPECT_FALSE(a.counting());  // NOLINT(bugprone-use-after-move): the point of the test
    EXPECT_EQ(ViewOf(board, Key(), T0).sessions, 2);
    b.Release();
    b.Release();
    EXPECT_EQ(ViewOf(board, Key(), T0).sessions, 1);
    c = board.OpenSession(Key());  // the old count ends, a new one starts
    EXPECT_EQ(ViewOf(board, Key(), T0).sessions, 1);
    EXPECT_EQ(board.AppStatus("db").at(0).sessions, 1);
  }
  EXPECT_EQ(ViewOf(board, Key(), T0).sessions, 0);
  // Other ports and apps count apart.
  SessionTicket other = board.OpenSession(Key("10.0.0.1", 5433));
  EXPECT_EQ(ViewOf(board, Key(), T0).sessions, 0);
  EXPECT_EQ(ViewOf(board, Key("10.0.0.1", 5433), T0).sessions, 1);
}

TEST(Board, TicketsOutliveDroppedMachinesAndTheBoard) {
  auto board = std::make_unique<Board>();
  board->SetTargets({{Key(), {Check()}}}, T0);
  SessionTicket kept = board->OpenSession(Key());
  SessionTicket ended = board->OpenSession(Key());
  board->SetTargets({}, T0);
  EXPECT_TRUE(board->AppStatus("db").empty());
  ended.Release();
  // Listed again while a session is still open: its count comes back.
  board->SetTargets({{Key(), {Check()}}}, T0);
  EXPECT_EQ(ViewOf(*board, Key(), T0).sessions, 1);
  kept.Release();
  EXPECT_EQ(ViewOf(*board, Key(), T0).sessions, 0);
  // A ticket may end after the board itself.
  SessionTicket last = board->OpenSession(Key());
  board->SetTargets({}, T0);
  board.reset();
  last.Release();  // must not touch the freed board
  EXPECT_FALSE(last.counting());
}

TEST(Board, RolesAreLearnedWithTheirTimeAndLoggedOnChange) {
  LogCapture logs;
  Board board;
  board.SetTargets({{Key(), {Check()}}}, T0);
  board.LearnRole(Key(), false, T0 + milliseconds(10));
  MachineView v = ViewOf(board, Key(), T0);
  EXPECT_EQ(v.role, Role::kPrimary);
  EXPECT_EQ(v.role_learned, T0 + milliseconds(10));
  board.LearnRole(Key(), false, T0 + milliseconds(20));
  EXPECT_EQ(ViewOf(board, Key(), T0).role_learned, T0 + milliseconds(20));
  board.LearnRole(Key(), true, T0 + milliseconds(30));
  EXPECT_EQ(ViewOf(board, Key(), T0).role, Role::kStandby);
  EXPECT_EQ(board.AppStatus("db").at(0).role, Role::kStandby);
  auto lines = logs.Lines();
  EXPECT_EQ(Count(lines, spdlog::level::info, "app db: machine 10.0.0.1 port 5432 is now primary"),
            1);
  EXPECT_EQ(Count(lines, spdlog::level::info, "app db: machine 10.0.0.1 port 5432 is now standby"),
            1);
  EXPECT_EQ(lines.size(), 2u);
}

TEST(Board, AppStatusListsOneAppsMachinesInOrder) {
  Board board;
  board.SetTargets({{Key("10.0.0.2"), {Check(1000, 0)}},
                    {Key("10.0.0.1", 5433), {Check(1000, 0)}},
                    {Key("10.0.0.1"), {Check(1000, 0)}},
                    {Key("10.0.0.1", 5432, "dbx"), {Check(1000, 0)}},
                    {Key("10.0.0.1", 5432, "da"), {Check(1000, 0)}}},
                   T0);
  board.CheckResult(Key("10.0.0.2"), 0, false, "connection refused", T0, kWall);
  board.CheckResult(Key("10.0.0.1"), 0, true, "", T0, kWall + std::chrono::seconds(5));
  auto status = board.AppStatus("db");
  ASSERT_EQ(status.size(), 3u);
  EXPECT_EQ(status[0].key, Key("10.0.0.1", 5432));
  EXPECT_EQ(status[1].key, Key("10.0.0.1", 5433));
  EXPECT_EQ(status[2].key, Key("10.0.0.2", 5432));
  EXPECT_TRUE(status[0].healthy);
  EXPECT_EQ(status[0].last_check, "passing");
  EXPECT_EQ(status[0].last_check_at, "2026-11-23T10:00:05Z");
  EXPECT_EQ(status[1].last_check, "");
  EXPECT_EQ(status[1].last_check_at, "");
  EXPECT_FALSE(status[2].healthy);
  EXPECT_EQ(status[2].last_check, "failing: connection refused");
  EXPECT_EQ(status[2].last_check_at, "2026-11-23T10:00:00Z");
  EXPECT_EQ(board.AppStatus("dbx").size(), 1u);
  EXPECT_TRUE(board.AppStatus("d").empty());
}

TEST(Board, PrometheusPerMachine) {
  Board board;
  board.SetTargets({{Key("10.0.0.1"), {Check(1000, 0)}}, {Key("fd00::2", 5433), {Check(1000, 0)}}},
                   T0);
  board.CheckResult(Key("fd00::2", 5433), 0, false, "connection refused", T0, kWall);
  board.LearnRole(Key("10.0.0.1"), true, T0);
  board.ConnectFailed(Key("fd00::2", 5433), T0);
  SessionTicket t = board.OpenSession(Key("10.0.0.1"));
  std::string text = board.Prometheus();
  auto has = [&](const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos;
  };
  EXPECT_TRUE(has("drawbridge_machine_healthy{app=\"db\",machine=\"10.0.0.1:5432\"} 1")) << text;
  EXPECT_TRUE(has("drawbridge_machine_healthy{app=\"db\",machine=\"[fd00::2]:5433\"} 0"));
  EXPECT_TRUE(has("drawbridge_machine_sessions{app=\"db\",machine=\"10.0.0.1:5432\"} 1"));
  EXPECT_TRUE(
      has("drawbridge_machine_role{app=\"db\",machine=\"10.0.0.1:5432\",role=\"standby\"} 1"));
  EXPECT_TRUE(
      has("drawbridge_machine_role{app=\"db\",machine=\"10.0.0.1:5432\",role=\"primary\"} 0"));
  EXPECT_TRUE(
      has("drawbridge_machine_role{app=\"db\",machine=\"[fd00::2]:5433\",role=\"unknown\"} 1"));
  EXPECT_TRUE(
      has("drawbridge_machine_connect_failures_total{app=\"db\",machine=\"[fd00::2]:5433\"} 1"));
  EXPECT_TRUE(has("# TYPE drawbridge_machine_connect_failures_total counter"));
  EXPECT_EQ(text.find("machine=\"other\""), std::string::npos);
}

TEST(Board, PrometheusLabelSetsAreBounded) {
  Board board;
  std::vector<Board::Target> targets;
  const int n = static_cast<int>(kMaxMachineLabelSets) + 5;
  for (int i = 0; i < n; ++i) {
    char address[32];
    std::snprintf(address, sizeof address, "10.1.%d.%d", i / 256, i % 256);
    targets.push_back({Key(address), {Check(1000, 0)}});
  }
  board.SetTargets(targets, T0);
  // One session on each, so that the summed set shows 5.
  std::vector<SessionTicket> tickets;
  for (const auto& t : targets) tickets.push_back(board.OpenSession(t.key));
  std::string text = board.Prometheus();
  size_t healthy_lines = 0;
  for (size_t pos = 0; (pos = text.find("\ndrawbridge_machine_healthy{", pos)) != std::string::npos;
       ++pos) {
    ++healthy_lines;
  }
  EXPECT_EQ(healthy_lines, kMaxMachineLabelSets + 1);
  // The five machines beyond the bound (in key order) are summed.
  EXPECT_NE(text.find("\ndrawbridge_machine_healthy{app=\"other\",machine=\"other\"} 5\n"),
            std::string::npos);
  EXPECT_NE(text.find("\ndrawbridge_machine_role{app=\"other\",machine=\"other\",role=\"unknown\"} 5\n"),
            std::string::npos);
  EXPECT_NE(text.find("\ndrawbridge_machine_sessions{app=\"other\",machine=\"other\"} 5\n"),
            std::string::npos);
}

TEST(Board, LabelValuesAreEscaped) {
  Board board;
  board.SetTargets({{Key("a\"b\\c"), {Check()}}}, T0);
  EXPECT_NE(board.Prometheus().find("machine=\"a\\\"b\\\\c:5432\""), std::string::npos);
}

// Connections opening and ending sessions, learning roles and failing connects on several
// threads while the checker's thread re-targets and the API reads: no data race (run under
// TSan), and every count ends at zero.
TEST(Board, ConcurrentUse) {
  Board board;
  std::vector<Board::Target> all, half;
  for (int i = 0; i < 8; ++i) {
    all.push_back({Key("10.0.0." + std::to_string(i)), {Check(1000, 0)}});
    if (i % 2 == 0) half.push_back(all.back());
  }
  board.SetTargets(all, T0);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      std::vector<SessionTicket> open;
      for (int i = 0; i < 3000; ++i) {
        const MachineKey& key = all[static_cast<size_t>((i + w) % 8)].key;
        open.push_back(board.OpenSession(key));
        if (open.size() > 5) open.erase(open.begin());
        if (i % 7 == 0) board.ConnectFailed(key, T0 + milliseconds(i));
        if (i % 11 == 0) board.ConnectSucceeded(key);
        if (i % 13 == 0) board.LearnRole(key, i % 2 == 0, T0 + milliseconds(i));
        std::vector<std::string> addresses = {key.address};
        (void)board.View(key.app, key.port, addresses, T0 + milliseconds(i));
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 500 && !stop; ++i) {
      board.SetTargets(i % 2 ? half : all, T0 + milliseconds(i));
      board.CheckResult(all[static_cast<size_t>(i % 8)].key, 0, i % 3 == 0, "refused",
                        T0 + milliseconds(i), kWall);
    }
  });
  threads.emplace_back([&] {
    for (int i = 0; i < 300 && !stop; ++i) {
      (void)board.Prometheus();
      (void)board.AppStatus("db");
    }
  });
  for (auto& t : threads) t.join();
  board.SetTargets(all, T0);
  for (const auto& s : board.AppStatus("db")) EXPECT_EQ(s.sessions, 0) << s.key.address;
}

}  // namespace
}  // namespace drawbridge::health
