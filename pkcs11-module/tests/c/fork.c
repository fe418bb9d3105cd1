/* fork.c: a child made by fork after C_Initialize. The inherited library is not the child's
 * (CKR_CRYPTOKI_NOT_INITIALIZED), its own C_Initialize succeeds, and parent and child then draw
 * different random bytes (the child did not inherit the parent's generator state).
 * Usage: fork MODULE.so; exit status 0 when all holds. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef unsigned long rv_t;
#define CKF_SERIAL_SESSION 4UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL

static rv_t (*init)(void *);
static rv_t (*fin)(void *);
static rv_t (*slots)(unsigned char, unsigned long *, unsigned long *);
static rv_t (*open_session)(unsigned long, unsigned long, void *, void *, unsigned long *);
static rv_t (*random_bytes)(unsigned long, unsigned char *, unsigned long);

static int session(unsigned long *h) {
    unsigned long list[8], n = 8;
    if (slots(1, list, &n) != 0 || n == 0) return -1;
    return open_session(list[0], CKF_SERIAL_SESSION, NULL, NULL, h) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 2) return 64;
    void *m = dlopen(argv[1], RTLD_NOW);
    if (!m) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 65; }
    /* CK_FUNCTION_LIST: a CK_VERSION, then the functions in the specification's order. */
    struct function_list { unsigned char major, minor; void (*f[68])(void); };
    rv_t (*get_list)(struct function_list **);
    *(void **)&get_list = dlsym(m, "C_GetFunctionList");
    struct function_list *l = NULL;
    if (!get_list || get_list(&l) != 0 || !l) return 66;
    *(void **)&init = (void *)l->f[0];
    *(void **)&fin = (void *)l->f[1];
    *(void **)&slots = (void *)l->f[4];
    *(void **)&open_session = (void *)l->f[12];
    *(void **)&random_bytes = (void *)l->f[64];
    unsigned long h;
    if (init(NULL) != 0 || session(&h) != 0) { fprintf(stderr, "parent set-up failed\n"); return 67; }
    unsigned char warm[16];
    if (random_bytes(h, warm, sizeof warm) != 0) return 68;
    int fd[2];
    if (pipe(fd) != 0) return 69;
    pid_t pid = fork();
    if (pid < 0) return 70;
    if (pid == 0) {
        close(fd[0]);
        unsigned char x[32];
        rv_t rv = random_bytes(h, x, sizeof x);
        if (rv != CKR_CRYPTOKI_NOT_INITIALIZED) { fprintf(stderr, "child: inherited session answered 0x%lx\n", rv); _exit(2); }
        rv = init(NULL);
        if (rv != 0) { fprintf(stderr, "child: C_Initialize 0x%lx\n", rv); _exit(3); }
        unsigned long hc;
        if (session(&hc) != 0) _exit(4);
        if (random_bytes(hc, x, sizeof x) != 0) _exit(5);
        if (write(fd[1], x, sizeof x) != (ssize_t)sizeof x) _exit(6);
        fin(NULL);
        _exit(0);
    }
    close(fd[1]); /* so a child that dies without writing ends the read */
    unsigned char a[32], b[32];
    if (random_bytes(h, a, sizeof a) != 0) return 71;
    if (read(fd[0], b, sizeof b) != (ssize_t)sizeof b) return 72;
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { fprintf(stderr, "child failed: %d\n", status); return 73; }
    if (memcmp(a, b, sizeof a) == 0) { fprintf(stderr, "parent and child drew the same bytes\n"); return 74; }
    /* The parent's library is untouched by the child. */
    if (random_bytes(h, a, sizeof a) != 0) return 75;
    fin(NULL);
    return 0;
}
