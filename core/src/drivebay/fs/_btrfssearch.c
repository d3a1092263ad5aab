/* drivebay.fs._btrfssearch: placeholder module while it is being written. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "drivebay.fs._btrfssearch", .m_size = -1};

PyMODINIT_FUNC PyInit__btrfssearch(void) { return PyModule_Create(&module); }
