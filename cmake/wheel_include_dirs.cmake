# The ROS 2 wheels on PyPI export generator_py targets that name the Python include directory of
# the machine they were built on (/opt/python/...: Python and NumPy headers). Point such missing
# directories at this machine's; a ROS install from packages has none and is left as it is.
#
# Our CMakeLists.txt calls mvfm_fix_wheel_include_dirs() after its find_package calls; the test
# environment's build of third-party ROS sources (tools/build_ros_tools.sh) includes this file
# as CMAKE_PROJECT_INCLUDE with MVFM_FIX_AT_END, which defers the same call to the end of the
# package's configuration, after its own find_package calls.
function(mvfm_fix_wheel_include_dirs)
  find_package(Python3 QUIET COMPONENTS Interpreter Development NumPy)
  get_property(imported DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTY IMPORTED_TARGETS)
  foreach(target ${imported})
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(dirs)
      set(fixed "")
      foreach(dir ${dirs})
        if(NOT EXISTS "${dir}" AND dir MATCHES "numpy/_?core/include")
          set(dir ${Python3_NumPy_INCLUDE_DIRS})
        elseif(NOT EXISTS "${dir}" AND dir MATCHES "include/python3")
          set(dir ${Python3_INCLUDE_DIRS})
        endif()
        list(APPEND fixed ${dir})
      endforeach()
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${fixed}")
    endif()
  endforeach()
endfunction()

if(MVFM_FIX_AT_END AND CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL mvfm_fix_wheel_include_dirs)
endif()
