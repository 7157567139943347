// A JDBC read with setFetchSize (a protocol portal with a row limit: Execute with max_rows, then
// PortalSuspended), no version in any SQL; then, when told, a write of the row it read whose id is
// the fourth argument.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;

import org.postgresql.util.PSQLException;

public final class FetchSize {
    public static void main(String[] args) throws Exception {
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2])) {
            conn.setAutoCommit(false);  // the driver fetches in chunks only inside a transaction
            StringBuilder read = new StringBuilder();
            try (PreparedStatement st = conn.prepareStatement(
                     "SELECT id, status FROM subscriptions WHERE id >= ? ORDER BY id DESC")) {
                st.setFetchSize(3);
                st.setInt(1, 42);
                try (ResultSet rs = st.executeQuery()) {
                    while (rs.next()) read.append(read.length() == 0 ? "" : " ").append(rs.getInt(1)).append(':')
                                          .append(rs.getString(2));
                }
            }
            conn.commit();
            System.out.println("read: " + read);
            System.out.println("ready");
            System.out.flush();
            System.in.read();  // another writer changes row 42 now
            try (PreparedStatement st = conn.prepareStatement("UPDATE subscriptions SET notes = ? WHERE id = ?")) {
                st.setString(1, "agent");
                st.setInt(2, Integer.parseInt(args[3]));
                System.out.println("write: " + st.executeUpdate());
                conn.commit();
            } catch (PSQLException e) {
                System.out.println("write: " + e.getSQLState() + " | " + e.getServerErrorMessage().getMessage() + " | "
                                   + e.getServerErrorMessage().getDetail());
                conn.rollback();
            }
        }
    }
}
