# A stand-in for a Slicer build tree's SlicerConfig.cmake, written for this project's tests: just enough of
# Slicer's extension variables and macros for the extension to configure, build and install without Slicer
# (Testing/test_cmake_install.py). Slicer's own macros also byte-compile the scripts and register tests; these
# only install every listed file where Slicer would put it, which is what the "missing Lib file" check needs.
set(Slicer_FOUND TRUE)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicerStandIn.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-stand-in/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR ${Slicer_QTSCRIPTEDMODULES_LIB_DIR})
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Nothing.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Nothing.cmake)
