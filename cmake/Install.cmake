# Installation: headers, client library, modules and their client libraries, CLI, CMake
# package, pkg-config, DEB.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# `cmake --install` and cpack use what is built; they do not rebuild the whole tree first.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(CHI_MODULE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/chimaera)
set(CHI_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/chimaera)

# Installed binaries find the client library next to them.
set_target_properties(chimaera chimaera_bench PROPERTIES
  INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")

add_library(chimaera_headers INTERFACE)
target_include_directories(chimaera_headers INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set_target_properties(chimaera_headers PROPERTIES EXPORT_NAME headers)
set_target_properties(chimaera_client PROPERTIES EXPORT_NAME client)
# Each module's client library (chimods/CMakeLists.txt, chi_module_client): exported as
# chimaera::<mod>_client, and chimaera-<mod>.pc for pkg-config.
get_property(chi_module_clients GLOBAL PROPERTY CHI_MODULE_CLIENTS)
set(chi_module_client_targets)
foreach(mod ${chi_module_clients})
  set_target_properties(chimaera_${mod}_client PROPERTIES EXPORT_NAME ${mod}_client)
  list(APPEND chi_module_client_targets chimaera_${mod}_client)
endforeach()

install(DIRECTORY include/chimaera DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS chimaera_client ${chi_module_client_targets} chimaera_headers
        EXPORT chimaeraTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS chimaera chimaera_bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS small_message kvs bdev LIBRARY DESTINATION ${CHI_MODULE_INSTALL_DIR})
install(FILES config/chimaera.yaml config/compose-example.yaml
        DESTINATION ${CMAKE_INSTALL_DATADIR}/chimaera)
install(EXPORT chimaeraTargets NAMESPACE chimaera:: DESTINATION ${CHI_CMAKE_INSTALL_DIR})

configure_package_config_file(cmake/chimaeraConfig.cmake.in
  ${CMAKE_BINARY_DIR}/chimaeraConfig.cmake
  INSTALL_DESTINATION ${CHI_CMAKE_INSTALL_DIR}
  PATH_VARS CHI_MODULE_INSTALL_DIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/chimaeraConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/chimaeraConfig.cmake ${CMAKE_BINARY_DIR}/chimaeraConfigVersion.cmake
        DESTINATION ${CHI_CMAKE_INSTALL_DIR})

# Relocatable: the prefix is found from where the .pc file lies.
file(RELATIVE_PATH CHI_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" CHI_PC_TO_PREFIX "${CHI_PC_TO_PREFIX}")
configure_file(cmake/chimaera.pc.in ${CMAKE_BINARY_DIR}/chimaera.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/chimaera.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
foreach(CHI_PC_MOD ${chi_module_clients})
  configure_file(cmake/chimaera-module-client.pc.in ${CMAKE_BINARY_DIR}/chimaera-${CHI_PC_MOD}.pc
                 @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/chimaera-${CHI_PC_MOD}.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()

set(CPACK_PACKAGE_NAME chimaera)
set(CPACK_PACKAGE_VENDOR "Chimaera in C")
set(CPACK_PACKAGE_CONTACT "chimaera developers <chimaera@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Task-execution runtime for RDMA clusters (C11)")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
include(CPack)
