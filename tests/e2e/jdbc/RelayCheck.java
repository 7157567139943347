// Runs a fixed JDBC session (server-side prepared statements from the first use) and prints what it saw.
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

public final class RelayCheck {
    private final List<String> lines = new ArrayList<>();

    private interface Step {
        String run() throws SQLException;
    }

    private void step(String name, Step step) {
        try {
            lines.add(name + ": " + step.run());
        } catch (SQLException e) {
            lines.add(name + ": error " + e.getSQLState() + " " + e.getMessage().split("\n")[0]);
        }
    }

    private static String rows(ResultSet rs) throws SQLException {
        ResultSetMetaData meta = rs.getMetaData();
        StringBuilder out = new StringBuilder();
        for (int i = 1; i <= meta.getColumnCount(); i++) {
            out.append(i == 1 ? "[" : ",").append(meta.getColumnName(i)).append(':').append(meta.getColumnTypeName(i));
        }
        out.append("]");
        while (rs.next()) {
            out.append(" (");
            for (int i = 1; i <= meta.getColumnCount(); i++) {
                out.append(i == 1 ? "" : ",").append(rs.getString(i));
            }
            out.append(")");
        }
        return out.toString();
    }

    private void run(Connection conn) throws SQLException {
        try (Statement st = conn.createStatement()) {
            step("create", () -> "count " + st.executeUpdate(
                    "CREATE TABLE jdbc_items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2))"));
        }
        try (PreparedStatement ins = conn.prepareStatement("INSERT INTO jdbc_items VALUES (?, ?, ?)")) {
            for (int i = 1; i <= 5; i++) {
                final int id = i;
                step("insert " + i, () -> {
                    ins.setInt(1, id);
                    ins.setString(2, "item " + id);
                    ins.setBigDecimal(3, new BigDecimal(id).multiply(new BigDecimal("1.25")));
                    return "count " + ins.executeUpdate();
                });
            }
            step("batch", () -> {
                for (int id = 6; id <= 9; id++) {
                    ins.setInt(1, id);
                    ins.setString(2, "batch " + id);
                    ins.setNull(3, java.sql.Types.NUMERIC);
                    ins.addBatch();
                }
                return "counts " + Arrays.toString(ins.executeBatch());
            });
            step("unique violation", () -> {
                ins.setInt(1, 1);
                ins.setString(2, "dup");
                ins.setNull(3, java.sql.Types.NUMERIC);
                return "count " + ins.executeUpdate();
            });
        }
        try (PreparedStatement sel = conn.prepareStatement(
                "SELECT id, name, price FROM jdbc_items WHERE id >= ? ORDER BY id")) {
            for (int i = 1; i <= 3; i++) {
                final int from = 2 * i;
                step("select " + i, () -> {
                    sel.setInt(1, from);
                    try (ResultSet rs = sel.executeQuery()) {
                        return rows(rs);
                    }
                });
            }
        }
        conn.setAutoCommit(false);
        try (PreparedStatement upd = conn.prepareStatement("UPDATE jdbc_items SET price = ? WHERE id = ?");
             PreparedStatement div = conn.prepareStatement("SELECT 1 / ?")) {
            step("update in tx", () -> {
                upd.setBigDecimal(1, new BigDecimal("99.99"));
                upd.setInt(2, 1);
                return "count " + upd.executeUpdate();
            });
            step("error in tx", () -> {
                div.setInt(1, 0);
                try (ResultSet rs = div.executeQuery()) {
                    return rows(rs);
                }
            });
            step("after error", () -> {
                upd.setBigDecimal(1, BigDecimal.ONE);
                upd.setInt(2, 2);
                return "count " + upd.executeUpdate();
            });
            conn.rollback();
            step("update committed", () -> {
                upd.setBigDecimal(1, new BigDecimal("7.50"));
                upd.setInt(2, 3);
                return "count " + upd.executeUpdate();
            });
            conn.commit();
        }
        conn.setAutoCommit(true);
        try (Statement st = conn.createStatement()) {
            step("final", () -> {
                try (ResultSet rs = st.executeQuery("SELECT id, price FROM jdbc_items WHERE id <= 3 ORDER BY id")) {
                    return rows(rs);
                }
            });
            step("server prepared", () -> {
                try (ResultSet rs = st.executeQuery(
                        "SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%jdbc_items%' "
                        + "ORDER BY statement")) {
                    return rows(rs);
                }
            });
            step("drop", () -> "count " + st.executeUpdate("DROP TABLE jdbc_items"));
        }
    }

    public static void main(String[] args) throws SQLException {
        if (args.length != 3) {
            System.err.println("usage: RelayCheck JDBC_URL USER PASSWORD");
            System.exit(2);
        }
        RelayCheck check = new RelayCheck();
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2])) {
            check.run(conn);
        }
        for (String line : check.lines) {
            System.out.println(line);
        }
    }
}
