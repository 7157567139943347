// Finds the views whose rows come from protected tables (SPEC 3.9), at start and at each reload.
#pragma once

#include "admin/catalog.h"
#include "config/rules.h"

namespace occ {

class PgConnection;

// Adds to report.views every view that reads a protected table (directly or through such views),
// and to report.relations the columns of the views whose rows are the table's. Needs the tables'
// identities in report.relations. Leaves the connection's search_path at pg_catalog.
void find_protected_views(PgConnection& db, const Rules& rules, CatalogReport& report);

}  // namespace occ
