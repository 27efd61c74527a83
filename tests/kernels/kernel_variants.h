/* The build variants of the built-in kernels that the op layer uses
 * (src/ops/device_ops.c), one per kernel family and dtype: what the
 * compile tests (NVRTC, hiprtc, the C compiler) build. */
#ifndef OX_TEST_KERNEL_VARIANTS_H
#define OX_TEST_KERNEL_VARIANTS_H

static const struct variant {
    const char *file;
    const char *options;
} variants[] = {
    {"elementwise", "-DFLAT=1 -DVEC=1 -DDT=0 -DOP=9 -DBMODE=0 -DFLAT_OP=0"},
    {"elementwise", "-DFLAT=1 -DVEC=8 -DDT=1 -DOP=10 -DBMODE=1 -DFLAT_OP=1"},
    {"elementwise", "-DFLAT=1 -DVEC=4 -DDT=2 -DOP=8 -DBMODE=2 -DFLAT_OP=2"},
    {"elementwise", "-DDT=0 -DOP=0"}, {"elementwise", "-DDT=1 -DOP=3"},
    {"elementwise", "-DDT=2 -DOP=8"}, {"elementwise", "-DDT=0 -DOP=12"},
    {"elementwise", "-DFLAT=1 -DVEC=8 -DDT=1 -DOP=13 -DBMODE=0 -DFLAT_OP=0"},
    {"rows", "-DDT=0 -DDT_D=0 -DOP=0 -DWG=256"}, {"rows", "-DDT=1 -DDT_D=3 -DOP=3 -DWG=64"},
    {"rows", "-DSOFTMAX=1 -DDT=0 -DDT_M=1 -DHAS_MASK=1 -DLOG=0 -DWG=256"},
    {"rows", "-DSOFTMAX=1 -DDT=2 -DDT_M=0 -DHAS_MASK=0 -DLOG=1 -DWG=64"},
    {"rows", "-DNORM=1 -DRMS=1 -DDT=0 -DHAS_W=1 -DDT_W=0 -DHAS_B=0 -DDT_B=0 -DWG=256"},
    {"rows", "-DNORM=1 -DRMS=0 -DDT=1 -DHAS_W=1 -DDT_W=2 -DHAS_B=1 -DDT_B=1 -DWG=64"},
    {"rows", "-DCROWS=1 -DNORM=1 -DRMS=1 -DDT=0 -DHAS_W=1 -DDT_W=0 -DHAS_B=0 -DDT_B=0 -DLANES=256 -DROWS=1 -DCHUNK=1"},
    {"rows", "-DCROWS=1 -DNORM=1 -DRMS=0 -DDT=1 -DHAS_W=1 -DDT_W=2 -DHAS_B=1 -DDT_B=1 -DLANES=1 -DROWS=16 -DCHUNK=16"},
    {"rows", "-DCROWS=1 -DSOFTMAX=1 -DDT=0 -DDT_M=1 -DHAS_MASK=1 -DLOG=0 -DLANES=32 -DROWS=4 -DCHUNK=4"},
    {"rows", "-DCROWS=1 -DSOFTMAX=1 -DDT=2 -DDT_M=0 -DHAS_MASK=0 -DLOG=1 -DLANES=1 -DROWS=8 -DCHUNK=8"},
    {"rows", "-DCROWS=1 -DADD_NORM=1 -DHAS_DW=1 -DLANES=1 -DROWS=16 -DCHUNK=16"},
    {"rows", "-DCROWS=1 -DADD_NORM=1 -DHAS_DW=0 -DLANES=64 -DROWS=2 -DCHUNK=2"},
    {"rope", "-DDT=0 -DNEOX=0 -DTABLE=0"}, {"rope", "-DDT=1 -DNEOX=1 -DTABLE=1"},
    {"rope", "-DROPE_QK=1 -DDT_QD=0 -DDT_KD=1 -DHAS_QW=1 -DHAS_KW=1 -DNEOX=1 -DTABLE=1 -DDMAX=256 "
             "-DLANES=128"},
    {"rope", "-DROPE_QK=1 -DDT_QD=2 -DDT_KD=0 -DHAS_QW=0 -DHAS_KW=0 -DNEOX=0 -DTABLE=0 -DDMAX=64 "
             "-DLANES=32"},
    /* matmul: a GPU's defaults (strided, padded rows), then a CPU runtime's
     * (one work-item a group, contiguous, VW-wide staging) for b along n and
     * along K, transposed A whose tile VW does not divide, 64-bit indices
     * with general strides, 16-bit operands */
    {"matmul", "-DDT_A=0 -DDT_B=0 -DTK=16 -DWG_M=16 -DWG_N=16 -DRM=4 -DRN=4 -DVW=1 -DSTRM=1 -DSTRN=1 "
               "-DPAD=1 -DKWI=1 -DMFIRST=0 -DA_KFAST=1 -DA_UNIT=0 -DB_KFAST=0 -DB_UNIT=1 -DD_UNIT=1 -DIDX32=1"},
    {"matmul", "-DDT_A=0 -DDT_B=0 -DTK=64 -DWG_M=1 -DWG_N=1 -DRM=6 -DRN=32 -DVW=8 -DSTRM=0 -DSTRN=0 "
               "-DPAD=0 -DKWI=1 -DMFIRST=1 -DA_KFAST=1 -DA_UNIT=0 -DB_KFAST=0 -DB_UNIT=1 -DD_UNIT=1 -DIDX32=1"},
    {"matmul", "-DDT_A=0 -DDT_B=0 -DTK=64 -DWG_M=1 -DWG_N=1 -DRM=12 -DRN=16 -DVW=8 -DSTRM=0 -DSTRN=0 "
               "-DPAD=0 -DKWI=4 -DMFIRST=1 -DA_KFAST=1 -DA_UNIT=0 -DB_KFAST=1 -DB_UNIT=0 -DD_UNIT=1 -DIDX32=1"},
    {"matmul", "-DDT_A=0 -DDT_B=0 -DTK=32 -DWG_M=2 -DWG_N=4 -DRM=6 -DRN=8 -DVW=8 -DSTRM=1 -DSTRN=0 "
               "-DPAD=1 -DKWI=2 -DMFIRST=0 -DA_KFAST=0 -DA_UNIT=1 -DB_KFAST=1 -DB_UNIT=0 -DD_UNIT=0 -DIDX32=1"},
    {"matmul", "-DDT_A=0 -DDT_B=0 -DTK=8 -DWG_M=4 -DWG_N=8 -DRM=2 -DRN=2 -DVW=2 -DSTRM=0 -DSTRN=1 "
               "-DPAD=0 -DKWI=8 -DMFIRST=1 -DA_KFAST=0 -DA_UNIT=0 -DB_KFAST=0 -DB_UNIT=0 -DD_UNIT=0 -DIDX32=0"},
    {"matmul", "-DDT_A=1 -DDT_B=2 -DTK=16 -DWG_M=8 -DWG_N=8 -DRM=2 -DRN=2 -DVW=4 -DSTRM=1 -DSTRN=1 "
               "-DPAD=1 -DKWI=1 -DMFIRST=0 -DA_KFAST=0 -DA_UNIT=1 -DB_KFAST=1 -DB_UNIT=0 -DD_UNIT=1 -DIDX32=1"},
    {"matmul", "-DDT_A=2 -DDT_B=1 -DTK=64 -DWG_M=1 -DWG_N=1 -DRM=6 -DRN=32 -DVW=8 -DSTRM=0 -DSTRN=0 "
               "-DPAD=0 -DKWI=1 -DMFIRST=1 -DA_KFAST=1 -DA_UNIT=0 -DB_KFAST=1 -DB_UNIT=0 -DD_UNIT=1 -DIDX32=1"},
    {"matmul", "-DMATVEC=1 -DDT_A=0 -DDT_B=1 -DLANES=32 -DROWS=4 -DCHUNK=4 -DA_K1=1 -DB_K1=1"},
    {"matmul", "-DMATVEC=1 -DDT_A=0 -DDT_B=2 -DLANES=1 -DROWS=16 -DCHUNK=16 -DA_K1=0 -DB_K1=0"},
    {"matmul", "-DQBLOCK=32"}, {"matmul", "-DQBLOCK=256"},
    {"quant", "-DQUANTIZE_ACT=1 -DQB=32"}, {"quant", "-DQUANTIZE_ACT=1 -DQB=256"},
    {"quant", "-DQMATVEC=1 -DDT_Q=4 -DQB=32 -DLANES=32 -DROWS=4 -DMT=1 -DDOT4=1"},
    {"quant", "-DQMATVEC=1 -DDT_Q=5 -DQB=32 -DLANES=1 -DROWS=16 -DMT=8 -DDOT4=0"},
    {"quant", "-DQMATVEC=1 -DDT_Q=6 -DQB=32 -DLANES=8 -DROWS=8 -DMT=4 -DDOT4=1"},
    {"quant", "-DQMATVEC=1 -DDT_Q=7 -DQB=32 -DLANES=32 -DROWS=2 -DMT=8 -DDOT4=0"},
    {"quant", "-DQMATVEC=1 -DDT_Q=8 -DQB=32 -DLANES=32 -DROWS=4 -DMT=1 -DDOT4=1"},
    {"quant", "-DQMATVEC=1 -DDT_Q=9 -DQB=256 -DLANES=32 -DROWS=4 -DMT=2 -DDOT4=1"},
    {"quant", "-DQMATVEC=1 -DDT_Q=10 -DQB=256 -DLANES=16 -DROWS=4 -DMT=1 -DDOT4=0"},
    {"quant", "-DQMATVEC=1 -DDT_Q=11 -DQB=256 -DLANES=32 -DROWS=4 -DMT=8 -DDOT4=1"},
    {"quant", "-DQMATVEC=1 -DDT_Q=11 -DQB=256 -DLANES=1 -DROWS=16 -DMT=1 -DDOT4=0"},
    {"quant", "-DQMATVEC_F=1 -DDT_Q=4 -DLANES=1 -DROWS=16"}, {"quant", "-DQMATVEC_F=1 -DDT_Q=7 -DLANES=32 -DROWS=4"},
    {"quant", "-DQMATVEC_F=1 -DDT_Q=10 -DLANES=4 -DROWS=8"}, {"quant", "-DQMATVEC_F=1 -DDT_Q=11 -DLANES=1 -DROWS=4"},
    {"matmul", "-DDT_A=0 -DDT_B=9 -DOX_QUANT=1 -DDT_Q=9 -DTK=16 -DWG_M=16 -DWG_N=16 -DRM=4 -DRN=4 -DVW=1 "
               "-DSTRM=1 -DSTRN=1 -DPAD=1 -DKWI=1 -DMFIRST=0 -DA_KFAST=1 -DA_UNIT=0 -DB_KFAST=0 -DB_UNIT=0 "
               "-DD_UNIT=1 -DIDX32=1"},
    {"matmul", "-DDT_A=0 -DDT_B=11 -DOX_QUANT=1 -DDT_Q=11 -DTK=64 -DWG_M=1 -DWG_N=1 -DRM=6 -DRN=32 -DVW=8 "
               "-DSTRM=0 -DSTRN=0 -DPAD=0 -DKWI=1 -DMFIRST=1 -DA_KFAST=1 -DA_UNIT=0 -DB_KFAST=0 -DB_UNIT=0 "
               "-DD_UNIT=1 -DIDX32=0"},
    {"movement", "-DDT_S=11 -DDT_D=0 -DOX_QUANT=1 -DDT_Q=11"},
    {"movement", "-DDT_S=0 -DDT_D=1"}, {"movement", "-DDT_S=3 -DDT_D=3"},
    {"movement", "-DDT_S=2 -DDT_D=0"},
    /* attention: the decode and tiled kernels with the GPU and the CPU-like
     * defaults, odd head sizes (padded lanes, runs moved back), strided
     * caches; the combine pass */
    {"attention", "-DDECODE=1 -DDT_K=1 -DDT_V=1 -DHEAD_D=128 -DHEAD_DV=128 -DHAS_MASK=0 -DCAUSAL=0 "
                  "-DK_UNIT=1 -DV_UNIT=1 -DM_UNIT=1 -DLANES=16 -DRUN=1 -DWG=128 -DROWS=4 -DKSTEP=16"},
    {"attention", "-DDECODE=1 -DDT_K=0 -DDT_V=0 -DHEAD_D=256 -DHEAD_DV=256 -DHAS_MASK=1 -DCAUSAL=1 "
                  "-DK_UNIT=1 -DV_UNIT=1 -DM_UNIT=1 -DLANES=32 -DRUN=1 -DWG=256 -DROWS=8 -DKSTEP=32"},
    {"attention", "-DDECODE=1 -DDT_K=2 -DDT_V=2 -DHEAD_D=64 -DHEAD_DV=32 -DHAS_MASK=1 -DCAUSAL=1 "
                  "-DK_UNIT=0 -DV_UNIT=0 -DM_UNIT=0 -DLANES=1 -DRUN=16 -DWG=8 -DROWS=8 -DKSTEP=16"},
    {"attention", "-DDECODE=1 -DDT_K=0 -DDT_V=1 -DHEAD_D=80 -DHEAD_DV=80 -DHAS_MASK=1 -DCAUSAL=0 "
                  "-DK_UNIT=1 -DV_UNIT=1 -DM_UNIT=1 -DLANES=32 -DRUN=1 -DWG=64 -DROWS=1 -DKSTEP=64"},
    {"attention", "-DTILED=1 -DDT_K=1 -DDT_V=1 -DHEAD_D=128 -DHEAD_DV=128 -DHAS_MASK=1 -DCAUSAL=1 "
                  "-DK_UNIT=1 -DV_UNIT=1 -DM_UNIT=1 -DLANES=16 -DRUN=1 -DROWS_Y=8 -DBQ=32 -DBK=16"},
    {"attention", "-DTILED=1 -DDT_K=2 -DDT_V=2 -DHEAD_D=256 -DHEAD_DV=256 -DHAS_MASK=1 -DCAUSAL=0 "
                  "-DK_UNIT=1 -DV_UNIT=1 -DM_UNIT=0 -DLANES=32 -DRUN=1 -DROWS_Y=4 -DBQ=16 -DBK=8"},
    {"attention", "-DTILED=1 -DDT_K=0 -DDT_V=2 -DHEAD_D=96 -DHEAD_DV=72 -DHAS_MASK=0 -DCAUSAL=0 "
                  "-DK_UNIT=0 -DV_UNIT=1 -DM_UNIT=1 -DLANES=1 -DRUN=16 -DROWS_Y=8 -DBQ=64 -DBK=16"},
    {"attention", "-DTILED=1 -DDT_K=1 -DDT_V=1 -DHEAD_D=8 -DHEAD_DV=8 -DHAS_MASK=1 -DCAUSAL=1 "
                  "-DK_UNIT=1 -DV_UNIT=1 -DM_UNIT=1 -DLANES=4 -DRUN=4 -DROWS_Y=4 -DBQ=4 -DBK=8"},
    /* paged caches (ox_attention_paged): pages of 64 and of 1 row */
    {"attention", "-DDECODE=1 -DDT_K=1 -DDT_V=1 -DHEAD_D=256 -DHEAD_DV=256 -DHAS_MASK=1 -DCAUSAL=1 "
                  "-DK_UNIT=1 -DV_UNIT=1 -DM_UNIT=1 -DLANES=16 -DRUN=1 -DWG=128 -DROWS=4 -DKSTEP=16 "
                  "-DPAGED=1 -DPAGE_SHIFT=6"},
    {"attention", "-DTILED=1 -DDT_K=1 -DDT_V=1 -DHEAD_D=128 -DHEAD_DV=128 -DHAS_MASK=0 -DCAUSAL=1 "
                  "-DK_UNIT=1 -DV_UNIT=1 -DM_UNIT=1 -DLANES=16 -DRUN=1 -DROWS_Y=8 -DBQ=32 -DBK=16 "
                  "-DPAGED=1 -DPAGE_SHIFT=0"},
    {"attention", "-DCOMBINE=1 -DHEAD_DV=128 -DWG=128"},
    {"attention", "-DCOMBINE=1 -DHEAD_DV=72 -DWG=64"},
    {"roofline", "-DPER_ITEM=8 -DHALF=0"}, {"roofline", "-DPER_ITEM=8 -DHALF=1"},
};

#define VARIANT_COUNT (sizeof variants / sizeof variants[0])

#endif /* OX_TEST_KERNEL_VARIANTS_H */
