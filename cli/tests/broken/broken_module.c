/*
 * A deliberately broken PKCS#11 module for the conformance kit's crash-survival test. It answers
 * the functions a kit needs to find its one token, then C_SignInit dereferences NULL (a
 * segmentation fault) and C_GenerateRandom never returns (a hang). Everything else is
 * CKR_FUNCTION_NOT_SUPPORTED. Built by cli/tests/conform.rs with the system's C compiler.
 */
#include <string.h>
#include <unistd.h>

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct {
    CK_VERSION cryptokiVersion;
    unsigned char manufacturerID[32];
    CK_ULONG flags;
    unsigned char libraryDescription[32];
    CK_VERSION libraryVersion;
} CK_INFO;
typedef struct {
    unsigned char slotDescription[64];
    unsigned char manufacturerID[32];
    CK_ULONG flags;
    CK_VERSION hardwareVersion, firmwareVersion;
} CK_SLOT_INFO;
typedef struct {
    unsigned char label[32], manufacturerID[32], model[16], serialNumber[16];
    CK_ULONG flags, ulMaxSessionCount, ulSessionCount, ulMaxRwSessionCount, ulRwSessionCount,
        ulMaxPinLen, ulMinPinLen, ulTotalPublicMemory, ulFreePublicMemory, ulTotalPrivateMemory,
        ulFreePrivateMemory;
    CK_VERSION hardwareVersion, firmwareVersion;
    unsigned char utcTime[16];
} CK_TOKEN_INFO;
typedef struct { CK_ULONG slotID, state, flags, ulDeviceError; } CK_SESSION_INFO;
typedef struct { CK_ULONG ulMinKeySize, ulMaxKeySize, flags; } CK_MECHANISM_INFO;
typedef struct { CK_VERSION version; void *f[68]; } CK_FUNCTION_LIST;

#define CKR_OK 0x0UL
#define CKR_SLOT_ID_INVALID 0x3UL
#define CKR_ARGUMENTS_BAD 0x7UL
#define CKR_FUNCTION_NOT_SUPPORTED 0x54UL
#define CKR_MECHANISM_INVALID 0x70UL
#define CKR_SESSION_HANDLE_INVALID 0xB3UL
#define CKR_BUFFER_TOO_SMALL 0x150UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL
#define SLOT 1UL
#define SESSION 1UL

static int initialized;
static int open_session;

static void pad(unsigned char *dst, size_t n, const char *s) {
    memset(dst, ' ', n);
    memcpy(dst, s, strlen(s) < n ? strlen(s) : n);
}

static CK_RV not_supported(void) { return CKR_FUNCTION_NOT_SUPPORTED; }

static CK_RV initialize(void *args) {
    (void)args;
    if (initialized) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    initialized = 1;
    return CKR_OK;
}

static CK_RV finalize(void *reserved) {
    if (reserved) return CKR_ARGUMENTS_BAD;
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    initialized = 0;
    open_session = 0;
    return CKR_OK;
}

static CK_RV get_info(CK_INFO *info) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!info) return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof *info);
    info->cryptokiVersion.major = 2;
    info->cryptokiVersion.minor = 40;
    pad(info->manufacturerID, 32, "hsmkit tests");
    pad(info->libraryDescription, 32, "a deliberately broken module");
    return CKR_OK;
}

static CK_RV get_slot_list(unsigned char present, CK_ULONG *list, CK_ULONG *count) {
    (void)present;
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!count) return CKR_ARGUMENTS_BAD;
    if (!list) { *count = 1; return CKR_OK; }
    if (*count < 1) { *count = 1; return CKR_BUFFER_TOO_SMALL; }
    list[0] = SLOT;
    *count = 1;
    return CKR_OK;
}

static CK_RV get_slot_info(CK_ULONG slot, CK_SLOT_INFO *info) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot != SLOT) return CKR_SLOT_ID_INVALID;
    if (!info) return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof *info);
    pad(info->slotDescription, 64, "broken slot");
    pad(info->manufacturerID, 32, "hsmkit tests");
    info->flags = 1; /* CKF_TOKEN_PRESENT */
    return CKR_OK;
}

static CK_RV get_token_info(CK_ULONG slot, CK_TOKEN_INFO *info) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot != SLOT) return CKR_SLOT_ID_INVALID;
    if (!info) return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof *info);
    pad(info->label, 32, "broken");
    pad(info->manufacturerID, 32, "hsmkit tests");
    pad(info->model, 16, "broken");
    pad(info->serialNumber, 16, "0");
    info->flags = 0x400; /* CKF_TOKEN_INITIALIZED */
    pad(info->utcTime, 16, "");
    return CKR_OK;
}

static CK_RV get_mechanism_list(CK_ULONG slot, CK_ULONG *list, CK_ULONG *count) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot != SLOT) return CKR_SLOT_ID_INVALID;
    if (!count) return CKR_ARGUMENTS_BAD;
    if (!list) { *count = 1; return CKR_OK; }
    if (*count < 1) { *count = 1; return CKR_BUFFER_TOO_SMALL; }
    list[0] = 0x40; /* CKM_SHA256_RSA_PKCS */
    *count = 1;
    return CKR_OK;
}

static CK_RV get_mechanism_info(CK_ULONG slot, CK_ULONG type, CK_MECHANISM_INFO *info) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot != SLOT) return CKR_SLOT_ID_INVALID;
    if (!info) return CKR_ARGUMENTS_BAD;
    if (type != 0x40) return CKR_MECHANISM_INVALID;
    info->ulMinKeySize = 2048;
    info->ulMaxKeySize = 4096;
    info->flags = 0x800 | 0x2000; /* CKF_SIGN | CKF_VERIFY */
    return CKR_OK;
}

static CK_RV open_session_fn(CK_ULONG slot, CK_ULONG flags, void *app, void *notify, CK_ULONG *session) {
    (void)app; (void)notify;
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot != SLOT) return CKR_SLOT_ID_INVALID;
    if (!(flags & 4)) return 0xB4; /* CKR_SESSION_PARALLEL_NOT_SUPPORTED */
    if (!session) return CKR_ARGUMENTS_BAD;
    open_session = 1;
    *session = SESSION;
    return CKR_OK;
}

static CK_RV close_session(CK_ULONG session) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (session != SESSION || !open_session) return CKR_SESSION_HANDLE_INVALID;
    open_session = 0;
    return CKR_OK;
}

static CK_RV close_all_sessions(CK_ULONG slot) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slot != SLOT) return CKR_SLOT_ID_INVALID;
    open_session = 0;
    return CKR_OK;
}

static CK_RV get_session_info(CK_ULONG session, CK_SESSION_INFO *info) {
    if (!initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (session != SESSION || !open_session) return CKR_SESSION_HANDLE_INVALID;
    if (!info) return CKR_ARGUMENTS_BAD;
    info->slotID = SLOT;
    info->state = 0; /* CKS_RO_PUBLIC_SESSION */
    info->flags = 4;
    info->ulDeviceError = 0;
    return CKR_OK;
}

/* The faults. */
static CK_RV sign_init(CK_ULONG session, void *mechanism, CK_ULONG key) {
    volatile int *nowhere = 0;
    (void)session; (void)mechanism; (void)key;
    *nowhere = 1;
    return CKR_OK;
}

static CK_RV generate_random(CK_ULONG session, unsigned char *out, CK_ULONG len) {
    (void)session; (void)out; (void)len;
    for (;;) pause();
    return CKR_OK;
}

static CK_FUNCTION_LIST list;

CK_RV C_GetFunctionList(CK_FUNCTION_LIST **out) {
    if (!out) return CKR_ARGUMENTS_BAD;
    list.version.major = 2;
    list.version.minor = 40;
    for (int i = 0; i < 68; i++) list.f[i] = (void *)not_supported;
    list.f[0] = (void *)initialize;
    list.f[1] = (void *)finalize;
    list.f[2] = (void *)get_info;
    list.f[3] = (void *)C_GetFunctionList;
    list.f[4] = (void *)get_slot_list;
    list.f[5] = (void *)get_slot_info;
    list.f[6] = (void *)get_token_info;
    list.f[7] = (void *)get_mechanism_list;
    list.f[8] = (void *)get_mechanism_info;
    list.f[12] = (void *)open_session_fn;
    list.f[13] = (void *)close_session;
    list.f[14] = (void *)close_all_sessions;
    list.f[15] = (void *)get_session_info;
    list.f[42] = (void *)sign_init;
    list.f[64] = (void *)generate_random;
    *out = &list;
    return CKR_OK;
}
