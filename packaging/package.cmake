# The Debian package (SPEC 7): `cpack -G DEB` in the build tree makes occproxy_<version>_amd64.deb.
# What it installs, where, and its maintainer scripts; man pages are generated from man/*.md.

set(OCCPROXY_SYSCONF_DIR "/etc/occproxy")
set(OCCPROXY_SYSTEMD_DIR "/lib/systemd/system")
set(OCCPROXY_DOC_DIR "${CMAKE_INSTALL_DATADIR}/doc/occproxy")
set(packaging_out "${CMAKE_BINARY_DIR}/packaging")
file(MAKE_DIRECTORY "${packaging_out}")

install(TARGETS occproxy RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY migrations/ DESTINATION ${CMAKE_INSTALL_DATADIR}/occproxy/migrations FILES_MATCHING PATTERN "*.sql")
install(DIRECTORY contrib/ DESTINATION ${CMAKE_INSTALL_DATADIR}/occproxy/contrib PATTERN "*.test.yml" EXCLUDE)
install(FILES config/occproxy.yaml config/rules.yaml DESTINATION ${OCCPROXY_SYSCONF_DIR})
install(FILES packaging/occproxy.logrotate DESTINATION /etc/logrotate.d RENAME occproxy)
install(FILES packaging/occproxy.service DESTINATION ${OCCPROXY_SYSTEMD_DIR})
install(FILES packaging/copyright DESTINATION ${OCCPROXY_DOC_DIR})

# A native package's changelog: Debian's format, compressed without a timestamp. Its first entry
# must name the version being built, so a version bump without a changelog entry fails here.
file(STRINGS packaging/changelog changelog_head LIMIT_COUNT 1)
if(NOT changelog_head MATCHES "^occproxy \\(${PROJECT_VERSION}\\) ")
  message(FATAL_ERROR "packaging/changelog: the first entry is not for version ${PROJECT_VERSION}: ${changelog_head}")
endif()
find_program(GZIP gzip REQUIRED)
add_custom_command(
  OUTPUT "${packaging_out}/changelog.gz"
  COMMAND ${GZIP} -9nc "${CMAKE_SOURCE_DIR}/packaging/changelog" > "${packaging_out}/changelog.gz"
  DEPENDS packaging/changelog
  VERBATIM)
set(package_generated "${packaging_out}/changelog.gz")
install(FILES "${packaging_out}/changelog.gz" DESTINATION ${OCCPROXY_DOC_DIR})

# Man pages: markdown in man/, kept in step with the README's tables, turned into roff by go-md2man.
find_program(GO_MD2MAN go-md2man)
if(GO_MD2MAN)
  string(TIMESTAMP OCCPROXY_MAN_DATE "%B %Y" UTC)
  foreach(page occproxy.1 occproxy.yaml.5 occproxy-rules.5)
    string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section "${page}")
    configure_file("man/${page}.md" "${packaging_out}/${page}.md" @ONLY)
    add_custom_command(
      OUTPUT "${packaging_out}/${page}.gz"
      COMMAND ${GO_MD2MAN} -in "${packaging_out}/${page}.md" -out "${packaging_out}/${page}"
      COMMAND ${GZIP} -9nf "${packaging_out}/${page}"
      DEPENDS "${packaging_out}/${page}.md"
      VERBATIM)
    list(APPEND package_generated "${packaging_out}/${page}.gz")
    install(FILES "${packaging_out}/${page}.gz" DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
else()
  message(WARNING "go-md2man not found (scripts/install-deps.sh installs it): the package will have no man pages")
endif()
add_custom_target(package_files ALL DEPENDS ${package_generated})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME occproxy)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Whoever builds the package for distribution names themselves here (and in packaging/changelog).
set(OCCPROXY_PACKAGE_MAINTAINER "occproxy developers <occproxy@example.org>" CACHE STRING "Maintainer field of the Debian package")
set(CPACK_PACKAGE_CONTACT "${OCCPROXY_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "optimistic concurrency control proxy for PostgreSQL")
# The synopsis is CPACK_PACKAGE_DESCRIPTION_SUMMARY; this is the extended description.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "occproxy sits between applications and a PostgreSQL server and speaks the
wire protocol on both sides. For the tables a DBA lists in a YAML rules file,
it checks every UPDATE and DELETE against the row version the writer read and
turns a stale write into a clear, retryable error instead of a lost update.
Conflicts are logged with a field-level diff, and counters are served over
HTTP in the Prometheus format.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The shared libraries it links come from dpkg-shlibdeps; the maintainer scripts need adduser.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql-client, logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_SOURCE_DIR}/packaging/conffiles;${CMAKE_SOURCE_DIR}/packaging/postinst;${CMAKE_SOURCE_DIR}/packaging/prerm;${CMAKE_SOURCE_DIR}/packaging/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
include(CPack)
