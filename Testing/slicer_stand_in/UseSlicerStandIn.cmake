# The stand-in macros (see SlicerConfig.cmake here): each installs the files it is given, keeping their paths.

macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(STANDIN "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(file ${STANDIN_SCRIPTS} ${STANDIN_RESOURCES})
    get_filename_component(folder ${file} DIRECTORY)
    install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${file} DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${folder})
  endforeach()
endmacro()

macro(ctkMacroCompilePythonScript)
  cmake_parse_arguments(STANDIN "NO_INSTALL_SUBDIR" "TARGET_NAME;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
  get_filename_component(package ${STANDIN_DESTINATION_DIR} NAME)  # the folder installed into INSTALL_DIR
  foreach(file ${STANDIN_SCRIPTS} ${STANDIN_RESOURCES})
    get_filename_component(folder ${file} DIRECTORY)
    install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${file} DESTINATION ${STANDIN_INSTALL_DIR}/${package}/${folder})
  endforeach()
endmacro()

macro(slicer_add_python_unittest)
endmacro()
