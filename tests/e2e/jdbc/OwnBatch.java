// JDBC batches that write one row twice, with no version in the SQL: the session's own first write
// is never a conflict for its second; a batch that also holds a really stale row fails whole.
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Arrays;

public final class OwnBatch {
    private static final String UPDATE = "UPDATE subscriptions SET notes = ? WHERE id = ?";

    private static String batch(Connection conn, Object[][] rows) throws SQLException {
        try (PreparedStatement st = conn.prepareStatement(UPDATE)) {
            for (Object[] row : rows) {
                st.setString(1, (String) row[0]);
                st.setInt(2, (Integer) row[1]);
                st.addBatch();
            }
            return "counts " + Arrays.toString(st.executeBatch());
        } catch (BatchUpdateException e) {
            SQLException next = e.getNextException();
            return "BatchUpdateException " + e.getSQLState() + " next " + (next == null ? "none" : next.getSQLState());
        }
    }

    private static String rows(Connection conn) throws SQLException {
        StringBuilder out = new StringBuilder();
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT * FROM subscriptions ORDER BY id")) {
            while (rs.next()) {
                out.append(out.length() == 0 ? "" : " ").append('(').append(rs.getInt("id")).append(',')
                   .append(rs.getString("notes")).append(',').append(rs.getLong("version")).append(')');
            }
        }
        return out.toString();
    }

    public static void main(String[] args) throws Exception {
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2])) {
            System.out.println("read: " + rows(conn));
            System.out.println("batch: " + batch(conn, new Object[][] {{"a", 42}, {"b", 42}, {"c", 43}}));
            System.out.println("single: " + batch(conn, new Object[][] {{"d", 42}}));
            System.out.println("read: " + rows(conn));
            // Another writer changes row 44 after this read (the test does it when told).
            System.out.println("ready");
            System.out.flush();
            System.in.read();
            System.out.println("stale batch: " + batch(conn, new Object[][] {{"e", 42}, {"f", 42}, {"g", 44}}));
        }
    }
}
