// A JDBC batch of version-checked updates, one of them stale; prints what the application sees.
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Arrays;

import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public final class OccBatch {
    private static final String UPDATE = "UPDATE subscriptions SET notes = ? WHERE id = ? AND version = ?";

    private static String describe(SQLException e) {
        StringBuilder out = new StringBuilder(e.getClass().getSimpleName()).append(' ').append(e.getSQLState());
        if (e instanceof PSQLException && ((PSQLException) e).getServerErrorMessage() != null) {
            ServerErrorMessage m = ((PSQLException) e).getServerErrorMessage();
            out.append(" | ").append(m.getMessage()).append(" | ").append(m.getDetail())
               .append(" | ").append(m.getSchema()).append('.').append(m.getTable())
               .append(" | ").append(m.getConstraint());
        }
        return out.toString();
    }

    private static String batch(Connection conn, long[][] rows) throws SQLException {
        try (PreparedStatement st = conn.prepareStatement(UPDATE)) {
            for (long[] row : rows) {
                st.setString(1, "batch " + row[0]);
                st.setLong(2, row[0]);
                st.setLong(3, row[1]);
                st.addBatch();
            }
            return "counts " + Arrays.toString(st.executeBatch());
        } catch (BatchUpdateException e) {
            String next = e.getNextException() == null ? "none" : describe(e.getNextException());
            return "BatchUpdateException " + e.getSQLState() + " counts " + Arrays.toString(e.getUpdateCounts())
                + " next " + next;
        }
    }

    private static String rows(Connection conn) throws SQLException {
        StringBuilder out = new StringBuilder();
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT id, notes, version FROM subscriptions ORDER BY id")) {
            while (rs.next()) {
                out.append(out.length() == 0 ? "" : " ").append('(').append(rs.getInt(1)).append(',')
                   .append(rs.getString(2)).append(',').append(rs.getLong(3)).append(')');
            }
        }
        return out.toString();
    }

    public static void main(String[] args) throws SQLException {
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2])) {
            System.out.println("stale batch: " + batch(conn, new long[][] {{43, 1}, {42, 1}, {44, 1}}));
            System.out.println("rows: " + rows(conn));
            System.out.println("fresh batch: " + batch(conn, new long[][] {{43, 1}, {42, 2}, {44, 1}}));
            System.out.println("rows: " + rows(conn));
        }
    }
}
