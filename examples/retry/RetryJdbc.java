// Retrying an occproxy version conflict with JDBC: re-read, re-apply, at most 3 attempts.
//
// Usage: java -cp postgresql.jar RetryJdbc.java JDBC_URL ACCOUNT_ID AMOUNT [THINK_SECONDS]
// Adds AMOUNT to accounts.balance of ACCOUNT_ID through occproxy. THINK_SECONDS stands for the
// time a user spends between seeing a value and saving a change (default 0).
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.concurrent.ThreadLocalRandom;

import org.postgresql.util.PSQLException;

public class RetryJdbc {
  static final int ATTEMPTS = 3;
  static final long BASE_DELAY_MS = 50; // doubles at each retry
  static final long MAX_DELAY_MS = 1000;
  // occproxy reports a stale write as serialization_failure (SQLSTATE 40001, conflict_sqlstate).
  static final String CONFLICT = "40001";

  // Exponential backoff with full jitter: a random wait in [0, BASE_DELAY_MS * 2^(attempt-1)].
  static void backoff(int attempt) throws InterruptedException {
    long cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS << (attempt - 1));
    Thread.sleep(ThreadLocalRandom.current().nextLong(cap + 1));
  }

  // One attempt: read the row, decide, write, in one transaction.
  static int deposit(Connection conn, int accountId, int amount, long thinkMs)
      throws SQLException, InterruptedException {
    try (PreparedStatement read = conn.prepareStatement("SELECT balance FROM accounts WHERE id = ?");
         PreparedStatement write = conn.prepareStatement("UPDATE accounts SET balance = ? WHERE id = ?")) {
      read.setInt(1, accountId);
      int balance;
      try (ResultSet rs = read.executeQuery()) {
        rs.next();
        balance = rs.getInt(1);
      }
      System.out.println("read balance " + balance);
      Thread.sleep(thinkMs);
      write.setInt(1, balance + amount);
      write.setInt(2, accountId);
      write.executeUpdate();
      conn.commit();
      return balance + amount;
    } catch (SQLException e) {
      conn.rollback();
      throw e;
    }
  }

  public static void main(String[] args) throws Exception {
    String url = args[0];
    int accountId = Integer.parseInt(args[1]);
    int amount = Integer.parseInt(args[2]);
    long thinkMs = args.length > 3 ? Math.round(1000 * Double.parseDouble(args[3])) : 0;
    String detail = "";
    try (Connection conn = DriverManager.getConnection(url)) {
      conn.setAutoCommit(false);
      for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
        System.out.println("attempt " + attempt);
        try {
          int balance = deposit(conn, accountId, amount, thinkMs);
          System.out.println("saved: balance is now " + balance);
          return;
        } catch (SQLException e) {
          if (!CONFLICT.equals(e.getSQLState())) throw e;
          detail = e instanceof PSQLException && ((PSQLException) e).getServerErrorMessage() != null
              ? ((PSQLException) e).getServerErrorMessage().getDetail() : e.getMessage();
          System.out.println("conflict: " + detail);
          if (attempt < ATTEMPTS) backoff(attempt);
        }
      }
    }
    // Out of retries: say what happened and that nothing was saved; the DBA finds the diff in the
    // proxy's GET /conflicts (and its audit log).
    System.err.println("Your deposit of " + amount + " to account " + accountId + " was not saved: the account was "
        + "changed by someone else " + ATTEMPTS + " times while we were saving it. " + detail
        + " Please look at the current balance and try again.");
    System.exit(1);
  }
}
