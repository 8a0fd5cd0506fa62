/* err.c - status and code lookups generated from KB_ERR_MAP. */
#include "kb_err.h"

#include "kb_banned.h"

static const int err_status[] = {
#define KB_ERR_STATUS(name, status, code) status,
    KB_ERR_MAP(KB_ERR_STATUS)
#undef KB_ERR_STATUS
};

static const char *const err_code[] = {
#define KB_ERR_CODE(name, status, code) code,
    KB_ERR_MAP(KB_ERR_CODE)
#undef KB_ERR_CODE
};

int
kb_err_status(kb_err err)
{
    if ((unsigned)err >= KB_ERR_COUNT_)
        return 500;
    return err_status[err];
}

const char *
kb_err_code(kb_err err)
{
    if ((unsigned)err >= KB_ERR_COUNT_)
        return "internal_error";
    return err_code[err];
}
