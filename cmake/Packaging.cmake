# Installing and packaging payoutd: man pages (built from docs/man/*.scd with scdoc), the
# documentation, bash completion, and a Debian package (cd build && cpack -G DEB).
#
# Included from the top CMakeLists.txt before the subdirectories: it chooses the install prefix
# and the unit folder that systemd/CMakeLists.txt installs into.

# payoutd is a system daemon: its unit runs /usr/bin/payoutd and it reads /etc/payoutd/, so /usr
# is the prefix unless one is given (-DCMAKE_INSTALL_PREFIX=...).
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX /usr CACHE PATH "Install prefix" FORCE)
endif()
# Debian 12 looks for package units in /lib/systemd/system (lintian: systemd-service-file-outside-lib).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(PAYOUTD_SYSTEMD_UNIT_DIR /lib/systemd/system CACHE STRING
      "Where payoutd.service is installed (relative to the prefix, or absolute)")
endif()
include(GNUInstallDirs)

set(PAYOUTD_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
set(PAYOUTD_DOCS_OUT ${PROJECT_BINARY_DIR}/docs)

# Directories the install creates are 0755 whatever the umask of the build, so the package's
# folders are what Debian expects.
set(CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

# --- man pages ----------------------------------------------------------------------------------
# build/docs/man/payoutd.8 (to read with man -l) and payoutd.8.gz (installed; gzip -n leaves no
# timestamp in it, as Debian wants).
find_program(PAYOUTD_SCDOC scdoc)
find_program(PAYOUTD_GZIP gzip)
if(PAYOUTD_SCDOC AND PAYOUTD_GZIP)
  set(man_outputs)
  foreach(page payoutd.8 payoutd.yaml.5)
    set(src ${PROJECT_SOURCE_DIR}/docs/man/${page}.scd)
    set(out ${PAYOUTD_DOCS_OUT}/man/${page})
    add_custom_command(
      OUTPUT ${out} ${out}.gz
      COMMAND ${CMAKE_COMMAND} -E make_directory ${PAYOUTD_DOCS_OUT}/man
      COMMAND sh -c "\"$0\" < \"$1\" > \"$2\"" ${PAYOUTD_SCDOC} ${src} ${out}
      COMMAND sh -c "\"$0\" -9 -n -c \"$1\" > \"$1.gz\"" ${PAYOUTD_GZIP} ${out}
      DEPENDS ${src}
      COMMENT "Generating man page ${page} with scdoc"
      VERBATIM)
    list(APPEND man_outputs ${out} ${out}.gz)
    string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
    install(FILES ${out}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
  add_custom_target(payoutd_man ALL DEPENDS ${man_outputs})
else()
  message(STATUS "scdoc not found: the man pages payoutd(8) and payoutd.yaml(5) are not built "
                 "or installed (apt-get install scdoc)")
endif()

# --- documentation and completion ---------------------------------------------------------------
# /usr/share/doc/payoutd: the reference (docs/README.md is its index), the Debian copyright and
# changelog. The version has no Debian revision (payoutd_0.1.0_amd64.deb), which makes the package
# native, and a native package's changelog is changelog.gz (lintian:
# wrong-name-for-changelog-of-native-package); the source stays packaging/changelog.Debian.
file(GLOB PAYOUTD_DOC_PAGES ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PAYOUTD_DOC_PAGES} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PAYOUTD_PACKAGING_DIR}/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
if(PAYOUTD_GZIP)
  set(changelog_out ${PAYOUTD_DOCS_OUT}/changelog.gz)
  add_custom_command(
    OUTPUT ${changelog_out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PAYOUTD_DOCS_OUT}
    COMMAND sh -c "\"$0\" -9 -n -c \"$1\" > \"$2\"" ${PAYOUTD_GZIP} ${PAYOUTD_PACKAGING_DIR}/changelog.Debian
            ${changelog_out}
    DEPENDS ${PAYOUTD_PACKAGING_DIR}/changelog.Debian
    VERBATIM)
  add_custom_target(payoutd_changelog ALL DEPENDS ${changelog_out})
  install(FILES ${changelog_out} DESTINATION ${CMAKE_INSTALL_DOCDIR})
endif()
install(FILES ${PROJECT_SOURCE_DIR}/docs/completion/payoutd.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME payoutd)

# --- the Debian package -------------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME payoutd)
set(CPACK_PACKAGE_VENDOR "payoutd maintainers")
set(CPACK_PACKAGE_CONTACT "payoutd maintainers <maintainers@users.noreply.r-seed-22c9d3c7.example>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "pays out CSV payout batches through a payment gateway")
# The extended description; CPack puts the summary above it.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "payoutd takes payout batches (CSV files) dropped into a spool folder, checks
every row before anything is sent, pays each payout through the payment
gateway's REST API within its rate limit, with retries that never pay twice,
follows each payout until it is final and writes exact results and totals.
It exports Prometheus metrics and runs as a hardened systemd service.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${CPACK_PACKAGE_CONTACT})
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: computed by dpkg-shlibdeps (package dpkg-dev) from the libraries the binary links.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# TLS to the gateway needs the system's CA store unless gateway.ca_file names one.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "ca-certificates")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PAYOUTD_PACKAGING_DIR}/conffiles ${PAYOUTD_PACKAGING_DIR}/postinst
    ${PAYOUTD_PACKAGING_DIR}/prerm ${PAYOUTD_PACKAGING_DIR}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS ${CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS})
include(CPack)
