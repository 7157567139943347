// An agent and billing on JDBC server-side prepared statements, no version in any SQL; prints what the agent saw.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public final class ReadTracking {
    private static final String READ = "SELECT * FROM subscriptions WHERE id = ?";
    private static final String READ_STATUS = "SELECT status, notes FROM subscriptions WHERE id = ?";
    private static final String WRITE = "UPDATE subscriptions SET notes = ? WHERE id = ?";
    private static final String SET_STATUS = "UPDATE subscriptions SET status = ? WHERE id = ?";

    // "[name:type,...] (v,v,...)": the metadata the driver built from RowDescription, then the rows.
    private static String read(PreparedStatement st, int id) throws SQLException {
        st.setInt(1, id);
        StringBuilder out = new StringBuilder("[");
        try (ResultSet rs = st.executeQuery()) {
            ResultSetMetaData md = rs.getMetaData();
            for (int i = 1; i <= md.getColumnCount(); i++) {
                out.append(i == 1 ? "" : ",").append(md.getColumnName(i)).append(':').append(md.getColumnTypeName(i));
            }
            out.append(']');
            while (rs.next()) {
                out.append(" (");
                for (int i = 1; i <= md.getColumnCount(); i++) {
                    out.append(i == 1 ? "" : ",").append(rs.getString(i));
                }
                out.append(')');
            }
        }
        return out.toString();
    }

    private static int update(PreparedStatement st, String value, int id) throws SQLException {
        st.setString(1, value);
        st.setInt(2, id);
        return st.executeUpdate();
    }

    // The agent's statements on subscriptions that are named server-side ones (prepareThreshold=1).
    private static int serverPrepared(Connection conn) throws SQLException {
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT count(*) FROM pg_prepared_statements "
                 + "WHERE name LIKE 'S\\_%' AND statement LIKE '%subscriptions%' "
                 + "AND statement NOT LIKE '%pg_prepared_statements%'")) {
            rs.next();
            return rs.getInt(1);
        }
    }

    private static String describe(SQLException e) {
        StringBuilder out = new StringBuilder(e.getClass().getSimpleName()).append(' ').append(e.getSQLState());
        if (e instanceof PSQLException && ((PSQLException) e).getServerErrorMessage() != null) {
            ServerErrorMessage m = ((PSQLException) e).getServerErrorMessage();
            out.append(" | ").append(m.getMessage()).append(" | ").append(m.getDetail())
               .append(" | ").append(m.getHint())
               .append(" | ").append(m.getSchema()).append('.').append(m.getTable())
               .append(" | ").append(m.getConstraint());
        }
        return out.toString();
    }

    public static void main(String[] args) throws SQLException {
        int rounds = Integer.parseInt(args[3]);
        try (Connection agent = DriverManager.getConnection(args[0], args[1], args[2]);
             Connection billing = DriverManager.getConnection(args[0], args[1], args[2]);
             PreparedStatement read = agent.prepareStatement(READ);
             PreparedStatement readStatus = agent.prepareStatement(READ_STATUS);
             PreparedStatement write = agent.prepareStatement(WRITE);
             PreparedStatement setStatus = billing.prepareStatement(SET_STATUS)) {
            List<String> counts = new ArrayList<>();
            String star = null;
            String status = null;
            // Rows 101.. succeed: billing's changes land before the agent's read, or the agent reads again.
            for (int i = 1; i <= rounds; i++) {
                int id = 100 + i;
                star = read(read, id);
                if (i % 2 == 0) {
                    update(setStatus, "billed " + i, id);
                    status = read(readStatus, id);
                }
                counts.add(String.valueOf(update(write, "note " + i, id)));
            }
            System.out.println("rounds: " + String.join(",", counts));
            System.out.println("last star read: " + star);
            System.out.println("last status read: " + status);
            System.out.println("server prepared: " + serverPrepared(agent));
            System.out.println("read 42: " + read(read, 42));
            System.out.println("billing: " + update(setStatus, "paused", 42));
            try {
                System.out.println("stale write: " + update(write, "agent note", 42));
            } catch (SQLException e) {
                System.out.println("stale write: " + describe(e));
            }
            try (PreparedStatement after = billing.prepareStatement(READ_STATUS)) {
                System.out.println("after: " + read(after, 42));
            }
            System.out.println("reread 42: " + read(read, 42));
            System.out.println("retry: " + update(write, "agent note", 42));
        }
    }
}
