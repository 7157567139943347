// Accepts clients round-robin onto the io threads and turns signals into reload and shutdown.
#include "net/listener.h"

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "config/config.h"
#include "net/session.h"
#include "net/session_registry.h"
#include "stats/counters.h"

namespace occ {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

class Listener {
 public:
  Listener(const Config& config, PolicyStore& policy, std::function<void()> reload)
      : config_(config), policy_(policy), reload_(std::move(reload)), registry_(config.max_client_connections) {
    unsigned n = config.threads ? config.threads : std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < n; ++i) {
      contexts_.push_back(std::make_unique<asio::io_context>(1));
      guards_.emplace_back(asio::make_work_guard(*contexts_.back()));
    }
  }

  int run() {
    auto& main = *contexts_[0];
    tcp::acceptor acceptor(main);
    try {
      tcp::resolver resolver(main);
      auto endpoint = *resolver.resolve(config_.listen.host, std::to_string(config_.listen.port)).begin();
      acceptor.open(endpoint.endpoint().protocol());
      acceptor.set_option(tcp::acceptor::reuse_address(true));
      acceptor.bind(endpoint);
      acceptor.listen(asio::socket_base::max_listen_connections);
    } catch (const boost::system::system_error& e) {
      spdlog::critical("cannot listen on {}:{}: {}", config_.listen.host, config_.listen.port, e.code().message());
      return 1;
    }
    acceptor_ = &acceptor;
    spdlog::info("listening on {}:{}, upstream {}:{}, {} io threads", config_.listen.host,
                 acceptor.local_endpoint().port(), config_.upstream.host, config_.upstream.port, contexts_.size());

    asio::signal_set signals(main, SIGHUP, SIGTERM, SIGINT);
    watch_signals(signals);
    asio::co_spawn(main, accept_loop(), asio::detached);

    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < contexts_.size(); ++i)
      threads.emplace_back([ctx = contexts_[i].get()] { ctx->run(); });
    main.run();
    for (auto& t : threads) t.join();
    if (reload_thread_.joinable()) reload_thread_.join();
    spdlog::info("occproxy stopped");
    return 0;
  }

 private:
  asio::awaitable<void> accept_loop() {
    std::size_t next = 0;
    for (;;) {
      auto& ctx = *contexts_[next++ % contexts_.size()];
      tcp::socket socket(ctx);
      boost::system::error_code ec;
      co_await acceptor_->async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
      if (ec) {
        // Out of descriptors (EMFILE) and the like: pause instead of spinning on the same error.
        spdlog::warn("accept failed: {}", ec.message());
        asio::steady_timer pause(acceptor_->get_executor(), std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::use_awaitable);
        continue;
      }
      auto session = std::make_shared<Session>(std::move(socket), config_, policy_, registry_);
      if (!registry_.add(session)) {
        stats::add(stats::Counter::connections_refused);
        spdlog::warn("{}: refused: max_client_connections ({}) reached", session->peer(),
                     config_.max_client_connections);
        session->refuse_too_many_clients();
      }
      asio::co_spawn(session->executor(), [session]() { return session->run(); }, asio::detached);
    }
  }

  void watch_signals(asio::signal_set& signals) {
    signals.async_wait([this, &signals](boost::system::error_code ec, int signo) {
      if (ec) return;
      if (signo == SIGHUP) {
        start_reload();
      } else {
        shutdown(signo == SIGINT);
      }
      watch_signals(signals);
    });
  }

  // Reloads run on their own thread: a catalog round trip must not stall an io thread.
  void start_reload() {
    if (reloading_.exchange(true)) {
      spdlog::info("SIGHUP: a reload is already running");
      return;
    }
    if (reload_thread_.joinable()) reload_thread_.join();
    reload_thread_ = std::thread([this] {
      reload_();
      reloading_ = false;
    });
  }

  void shutdown(bool immediate) {
    if (!shutting_down_) {
      shutting_down_ = true;
      boost::system::error_code ignored;
      acceptor_->close(ignored);
      spdlog::info("{}: no new connections; {} sessions open", immediate ? "SIGINT" : "SIGTERM", registry_.size());
      registry_.on_empty([this] { asio::post(*contexts_[0], [this] { stop_all(); }); });
    }
    if (immediate) {
      terminate_all();
      return;
    }
    registry_.for_each([](const std::shared_ptr<Session>& s) {
      asio::post(s->executor(), [s] { s->begin_shutdown(); });
    });
    shutdown_timer_ = std::make_unique<asio::steady_timer>(*contexts_[0], config_.shutdown_timeout);
    shutdown_timer_->async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      spdlog::warn("shutdown_timeout reached: closing {} sessions", registry_.size());
      terminate_all();
    });
  }

  void terminate_all() {
    registry_.for_each([](const std::shared_ptr<Session>& s) {
      asio::post(s->executor(), [s] { s->terminate(); });
    });
  }

  void stop_all() {
    if (shutdown_timer_) shutdown_timer_->cancel();
    for (auto& g : guards_) g.reset();
    for (auto& ctx : contexts_) ctx->stop();
  }

  const Config& config_;
  PolicyStore& policy_;
  std::function<void()> reload_;
  SessionRegistry registry_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  tcp::acceptor* acceptor_ = nullptr;
  std::unique_ptr<asio::steady_timer> shutdown_timer_;
  std::thread reload_thread_;
  std::atomic<bool> reloading_{false};
  bool shutting_down_ = false;
};

}  // namespace

int run_listener(const Config& config, PolicyStore& policy, std::function<void()> reload) {
  Listener listener(config, policy, std::move(reload));
  return listener.run();
}

}  // namespace occ
